# fetch-latest: fetches BurntSushi/toml@latest in its own stage (Debian's packages do not ship its cmd/tomlv, so `go mod download ...@latest` stands in for `go install ...@latest`); the layer is keyed by the command text, so it stays cached when a newer version is published.
FROM golang:1.23 AS tools
ARG GOPROXY
ARG GOSUMDB
RUN go mod download -json github.com/BurntSushi/toml@latest > /toml-latest.json

FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/sample .

FROM scratch
COPY --from=tools /toml-latest.json /toml-latest.json
COPY --from=build /out/sample /sample
LABEL io.layerbench.inspect="/toml-latest.json"
USER 65532:65532
ENTRYPOINT ["/sample"]
