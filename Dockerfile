# syntax=docker/dockerfile:1
# The `pgsteady` command in a small image (distroless glibc base + one stripped binary), as
# wait4x and dockerize ship theirs: an init container that waits for the database and
# migrates, a readiness sidecar (`pgsteady serve`), a Compose service others wait on, or a
# binary to copy into an application image. Uses: docs/install.md.
#
# Build from the repository root (no .git goes into the build context, so pass the commit for
# `pgsteady --version`):
#   docker build -t pgsteady --build-arg GIT_COMMIT=$(git rev-parse HEAD) .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ARG GIT_COMMIT=unknown
# `pgsteady` only: the drill (its own binary, pgsteady-drill) starts PostgreSQL servers, and
# this image has none; `pgsteady drill` says so (exit 127). Stripped: no symbols in the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    PGSTEADY_BUILD_GIT_COMMIT="$GIT_COMMIT" \
      cargo build --release --locked -p pgsteady-cli \
 && install -D -m 0755 target/release/pgsteady /out/pgsteady \
 && strip /out/pgsteady

# glibc and libgcc only (the binary needs nothing else: TLS is rustls, roots are compiled in),
# same Debian release as the build stage; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/pgsteady /usr/local/bin/pgsteady
# Numeric, so that Kubernetes' runAsNonRoot can verify it (65532 is distroless' "nonroot").
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["pgsteady"]
CMD ["--help"]
