# no-git-ignore (mistake): no-git-ignore.Dockerfile.dockerignore has no `.git` entry, so .git/ is part of the
# build context and a commit that changes no file still misses `COPY . .` and rebuilds the binary.
# Otherwise like good.Dockerfile. (BuildKit reads <Dockerfile>.dockerignore; the legacy builder reads only the
# context's own .dockerignore, so this mistake shows with BuildKit only.)
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
