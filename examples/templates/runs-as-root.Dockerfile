# runs-as-root (mistake): no USER instruction, so the service runs as uid 0. Otherwise like good.Dockerfile.
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
ENTRYPOINT ["/sample"]
