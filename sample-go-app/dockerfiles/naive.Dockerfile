# naive: copies everything first, so any change re-runs the download and the build; single stage, runs as root.
FROM golang:1.23
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY . .
RUN go mod download
RUN go build -o /usr/local/bin/sample .
ENTRYPOINT ["/usr/local/bin/sample"]
