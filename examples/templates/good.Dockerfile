# good: module files first so `go mod download` stays cached when only sources change; a static binary
# (CGO_ENABLED=0) in an empty final image, run as an unprivileged user. good.Dockerfile.dockerignore keeps .git/ out.
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
