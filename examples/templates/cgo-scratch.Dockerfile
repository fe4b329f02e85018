# cgo-scratch (mistake): built with CGO_ENABLED=1 (the golang image has gcc, and the net package then uses
# the C resolver), so the binary is dynamically linked against glibc; `scratch` has no loader and no libc,
# so the container cannot start (`exec /sample: no such file or directory`). Otherwise like good.Dockerfile.
FROM golang:1.23 AS build
ARG GOPROXY
ARG GOSUMDB
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -o /out/sample .

FROM scratch
COPY --from=build /out/sample /sample
USER 65532:65532
ENTRYPOINT ["/sample"]
