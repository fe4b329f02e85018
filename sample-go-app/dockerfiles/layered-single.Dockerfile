# layered-single: go.mod and go.sum first (download layer survives source edits), but a single stage on the golang image, run as root.
FROM golang:1.23
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -o /usr/local/bin/sample .
ENTRYPOINT ["/usr/local/bin/sample"]
