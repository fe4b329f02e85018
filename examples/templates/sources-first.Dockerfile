# sources-first (mistake): the sources are copied before `go mod download`, so every .go edit
# re-runs the download (and fetches every module again). Otherwise like good.Dockerfile.
FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY . .
RUN go mod download
RUN CGO_ENABLED=0 go build -o /out/sample .

FROM scratch
COPY --from=build /out/sample /sample
USER 65532:65532
ENTRYPOINT ["/sample"]
