# layered: go.mod and go.sum first so the download layer survives source edits; a static binary (CGO_ENABLED=0) in an empty final image, run as an unprivileged user.
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
