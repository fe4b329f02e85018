# no-cache-mount: cache-mount with its two --mount=type=cache options removed and nothing else changed: X2's like-for-like comparison.
FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/sample .

FROM scratch
COPY --from=build /out/sample /sample
USER 65532:65532
ENTRYPOINT ["/sample"]
