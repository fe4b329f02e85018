# tool-install: installs tomlv with `go install ...@latest` in its own stage; that layer is keyed by the command text, so it stays cached when a newer version is published.
FROM golang:1.23 AS tools
ARG GOPROXY
ARG GOSUMDB
RUN go install github.com/BurntSushi/toml/cmd/tomlv@latest

FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/sample .

FROM scratch
COPY --from=tools /go/bin/tomlv /tomlv
COPY --from=build /out/sample /sample
LABEL io.layerbench.inspect="/tomlv"
USER 65532:65532
ENTRYPOINT ["/sample"]
