"""Reading base images and required ARGs out of Dockerfiles."""
from builder.dockerfile import read


def test_base_images_skip_scratch_and_stage_names_and_substitute_args():
    text = """# syntax=docker/dockerfile:1
ARG BASE=registry.local/ns/base
ARG TAG
FROM ${BASE}:${TAG:-1} AS build
RUN make \\
    all
FROM scratch
COPY --from=build /out /
FROM build AS test
FROM --platform=linux/amd64 registry.local/ns/runtime:2
"""
    parsed = read(text, {"TAG": "7"})
    assert parsed.base_images == ["registry.local/ns/base:7", "registry.local/ns/runtime:2"]
    assert parsed.required_args == []


def test_args_without_defaults_must_be_given_except_automatic_ones():
    parsed = read("ARG VERSION\nFROM x\nARG TARGETARCH\nARG LEVEL=3\nARG TOKEN\nRUN echo $VERSION\n", {"TOKEN": "t"})
    assert parsed.required_args == ["VERSION"]
    assert read("FROM x\nARG VERSION\n", {"VERSION": ""}).required_args == []
