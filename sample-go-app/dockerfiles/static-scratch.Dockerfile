# static-scratch: multi-stage, CGO_ENABLED=0 static binary in an empty image, non-root; APP_VERSION is a build argument first used by the build step.
FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG APP_VERSION=dev
RUN CGO_ENABLED=0 go build -ldflags "-X main.version=${APP_VERSION}" -o /out/sample .

FROM scratch
COPY --from=build /out/sample /sample
USER 65532:65532
ENTRYPOINT ["/sample"]
