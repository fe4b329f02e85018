# dynamic-debian: multi-stage with cgo enabled (net links libc dynamically), runtime on debian:bookworm-slim, non-root.
FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -o /out/sample .

FROM debian:bookworm-slim
COPY --from=build /out/sample /usr/local/bin/sample
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sample"]
