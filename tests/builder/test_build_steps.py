"""A build's progress in Dockerfile steps, read from its log lines as buildah and docker print them."""
from accounts.models import Account
from builder.builds import status
from builder.logs import LogWriter
from builder.models import Build, BuildLog
from registry.models import Repository


def new_build(name: str) -> Build:
    owner = Account.create(name=name)
    repo = Repository.create(namespace=owner, name="app")
    return Build.create(uuid=f"{name}-0000-0000-0000-000000000000"[:36], repository=repo)


def lines(writer: LogWriter, *texts: str) -> dict:
    for text in texts:
        writer.line(text)
    writer.flush()
    return status(Build.get_by_id(writer.build_id))


def test_docker_and_single_stage_buildah_lines_say_where_the_build_is(db):
    writer = LogWriter(new_build("docker"), 1 << 20)
    assert lines(writer) == {"total_commands": 0, "current_command": None}
    writer.expect_steps(4)
    assert lines(writer, "Step 1/4 : FROM base", " ---> abc") == {"total_commands": 4, "current_command": 1}
    assert lines(writer, "Step 2/4 : RUN make", "STEP 3/4: COPY . /") == {"total_commands": 4, "current_command": 3}
    types = [e.type for e in BuildLog.select().where(BuildLog.build == writer.build_id).order_by(BuildLog.seq)]
    assert types == ["command", "", "command", "command"]


def test_multi_stage_buildah_lines_are_counted_against_the_dockerfiles_total(db):
    writer = LogWriter(new_build("buildah"), 1 << 20)
    writer.expect_steps(4)
    assert lines(writer, "[1/2] STEP 1/2: FROM base AS build", "[1/2] STEP 2/2: RUN make",
                 "[2/2] STEP 1/2: FROM base") == {"total_commands": 4, "current_command": 3}
    # A miscounted total never shows more steps done than there are.
    assert lines(writer, "[2/2] STEP 2/3: COPY --from=build / /", "[2/2] STEP 3/3: LABEL a=b") == \
        {"total_commands": 5, "current_command": 5}
    # A retried attempt starts over.
    writer.expect_steps(4)
    assert lines(writer) == {"total_commands": 4, "current_command": None}
