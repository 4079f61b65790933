# Build: docker build -t job-executor-service .
# Mirrors what `ko build ./cmd/job-executor-service` produces: a static, trimmed binary on
# distroless/static running as the nonroot user (65532), so the chart works with either image.
FROM golang:1.26 AS build
WORKDIR /src
# Module download is a separate layer so source edits do not refetch dependencies.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" \
      -o /out/job-executor-service ./cmd/job-executor-service

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/job-executor-service /job-executor-service
USER 65532:65532
EXPOSE 8080
# The same binary is the Jobs' init container (`job-executor-service copy-files ...`).
ENTRYPOINT ["/job-executor-service"]
