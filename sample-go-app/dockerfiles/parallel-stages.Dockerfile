# parallel-stages: two independent stages (the binary, and the dependencies' license files) that the image needs, and a vet stage it does not; BuildKit can run the first two at once and skip the third.
FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -o /out/sample .

# WORKDIR comes first: were this stage to start with the same steps as build,
# the legacy builder's cache lookup (the newest image made by the same step
# from the same parent) would take this stage's steps for build's on a rebuild.
FROM golang:1.23 AS licenses
WORKDIR /deps
ARG GOPROXY
ARG GOSUMDB
COPY go.mod go.sum ./
RUN go mod download && mkdir -p /licenses && cd "$(go env GOMODCACHE)" && find . -iname 'LICENSE*' -type f -exec cp --parents {} /licenses/ \;

FROM build AS vet
RUN go vet ./...

FROM scratch
COPY --from=build /out/sample /sample
COPY --from=licenses /licenses /licenses
USER 65532:65532
ENTRYPOINT ["/sample"]
