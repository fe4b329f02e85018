# static-scratch-naive: static-scratch with `COPY . .` moved above `RUN go mod download` (no other difference), so any source edit re-runs the download.
FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
COPY . .
RUN go mod download
ARG APP_VERSION=dev
RUN CGO_ENABLED=0 go build -ldflags "-X main.version=${APP_VERSION}" -o /out/sample .

FROM scratch
COPY --from=build /out/sample /sample
USER 65532:65532
ENTRYPOINT ["/sample"]
