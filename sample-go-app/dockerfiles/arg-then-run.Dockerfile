# arg-then-run: APP_VERSION is declared before a RUN that never mentions it, then first used by the build step; a changed value shows which step the argument reaches first.
FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
ARG APP_VERSION=dev
RUN go env GOOS GOARCH > /tmp/platform.txt
COPY . .
RUN CGO_ENABLED=0 go build -ldflags "-X main.version=${APP_VERSION}" -o /out/sample .

FROM scratch
COPY --from=build /out/sample /sample
USER 65532:65532
ENTRYPOINT ["/sample"]
