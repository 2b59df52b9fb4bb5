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


def test_steps_count_the_stages_the_build_runs():
    # Global ARGs are no steps; every instruction of a stage is, its FROM included.
    assert read("# c\nARG X=1\nFROM base\nRUN a \\\n  b\nCOPY . /x\n", {}).steps == 3
    multi = ("FROM golang AS build\nRUN make\nFROM busybox AS unused\nRUN x\nFROM build AS test\nRUN t\n"
             "FROM alpine\nCOPY --from=build /a /a\nCMD x\n")
    assert read(multi, {}).steps == 5  # build (2) + the last stage (3); unused and test are skipped
    assert read(multi, {}, target="test").steps == 4  # test (2) + build, its base (2)
    assert read(multi, {}, target="unused").steps == 2
    assert read("FROM a\nRUN x\nFROM b\nCOPY --from=0 /x /x\n", {}).steps == 4
    assert read("", {}).steps == 0
