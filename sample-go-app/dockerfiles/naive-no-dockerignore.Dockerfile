# naive-no-dockerignore: the naive Dockerfile with no .dockerignore rules, so .git/ is part of the build context.
FROM golang:1.23
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY . .
RUN go mod download
RUN go build -o /usr/local/bin/sample .
ENTRYPOINT ["/usr/local/bin/sample"]
