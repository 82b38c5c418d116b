"""3. `build_index` SIGKILLed while it writes a version, and an index rebuild job whose
worker is SIGKILLed."""

import io
import os
import signal
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from jobs.models import Job, JobStatus
from tests.helpers import process_env, wait_for
from tests.integration.faults.harness import alive, job_get, run_with_fault


def _search(prompt: str) -> tuple[str, list[tuple[int, float]]]:
    from retrieval.selectors import artwork_search

    result = artwork_search(prompt, k=10)
    return result.index_version, [(hit.artwork.pk, round(hit.score, 5)) for hit in result.hits]


@pytest.mark.django_db(transaction=True)
def test_an_index_build_killed_half_way_leaves_the_served_index_alone(indexed_demo, tmp_path):
    """SIGKILL `manage.py build_index` once it has written the first file of the new version:
    the old version keeps answering (here and in a process that starts afresh), the
    half-written folder is ignored, pruning removes it once it is old, and a later build
    (the same command, run here) succeeds."""
    from retrieval.ml.index import IndexStore, list_versions, prune_versions, read_current
    from retrieval.selectors import space_configured
    from retrieval.services import index_root

    root = index_root(space_configured())
    old = read_current(root)
    prompts = ["quiet hills, landscape", "a portrait by Chiyo Hanabusa"]
    before = [_search(p) for p in prompts]
    assert all(version == old and hits for version, hits in before)

    flag, log = tmp_path / "written.flag", tmp_path / "build.log"
    build = run_with_fault(
        ["manage.py", "build_index", "--no-progress"],
        process_env(),
        log,
        "hang-after-writing-the-index-file",
        flag,
    )
    try:
        wait_for(lambda: flag.exists() or build.poll() is not None, timeout=120)
        alive(build, log)
        half = Path(flag.read_text()).parent
        assert half.parent == root and half.name.startswith(".tmp-"), half
        assert (half / "index.faiss").is_file() and not (half / "meta.json").exists()
    finally:
        build.kill()  # SIGKILL, mid-write
        build.wait()
    assert build.returncode == -signal.SIGKILL

    assert read_current(root) == old and list_versions(root) == [old]
    assert [_search(p) for p in prompts] == before  # this process: same version, same hits
    fresh = IndexStore(root).current()  # a process starting now
    assert fresh.version == old

    # The folder may belong to a build still running: pruning leaves it until it is old.
    assert prune_versions(root) == [] and half.exists()
    hours_ago = time.time() - 7 * 3600
    os.utime(half, (hours_ago, hours_ago))

    call_command("build_index", "--no-progress", stdout=io.StringIO())  # a later build
    new = read_current(root)
    assert new != old and new in list_versions(root)
    from retrieval.selectors import index_store

    index_store(space_configured()).reload()  # else it looks at CURRENT within a second
    assert not half.exists()  # the later build's pruning removed the dead build's folder
    after = [_search(p) for p in prompts]
    assert [v for v, _ in after] == [new, new]
    assert [hits for _, hits in after] == [hits for _, hits in before]  # same catalog


@pytest.mark.django_db(transaction=True)
def test_an_index_rebuild_job_killed_half_way_does_not_block_the_next(
    indexed_demo, tmp_path, monkeypatch
):
    """The same fault for a rebuild run as a job: its worker (here the task run in a
    subprocess) is SIGKILLed mid-build, so the job stays `running`. Rebuilds are one at a
    time, so before the fix every later request returned that dead job until it went stale
    (15 minutes). Now the next request finds its worker gone and resumes it (its task is
    sent again, here run in this process as a worker would), with no wait."""
    from jobs import services as jobs
    from retrieval import selectors, services
    from retrieval.ml.index import read_current
    from retrieval.tasks import INDEX_REBUILD, index_rebuild_task

    root = services.index_root(selectors.space_configured())
    old_version = read_current(root)
    # Not through the broker: earlier tests of this module point the app at brokers they
    # have since stopped. What would be sent is recorded instead.
    sent = []
    from jobs import sending

    monkeypatch.setattr(sending, "_send", lambda job_id, spec, *a, **kw: sent.append(spec) or True)
    dead, _created = jobs.job_create_exclusive(INDEX_REBUILD)
    jobs.job_enqueue(dead, index_rebuild_task)
    flag, log = tmp_path / "paused.flag", tmp_path / "task.log"
    run_task = (
        "from retrieval.tasks import index_rebuild_task; "
        f"index_rebuild_task.apply(args=[{dead.pk}], task_id='killed-worker')"
    )
    task = run_with_fault(
        ["manage.py", "shell", "-c", run_task],
        process_env(MYTHRAGEN_TEST_GO=tmp_path / "never"),
        log,
        "pause-index-rebuild",
        flag,
    )
    try:
        wait_for(lambda: flag.exists() or task.poll() is not None, timeout=120)
        alive(task, log)
        assert job_get(dead.pk).status == JobStatus.RUNNING
    finally:
        task.kill()
        task.wait()
    sent.clear()
    t0 = time.monotonic()
    again = services.index_rebuild_request()
    answered = time.monotonic() - t0
    assert again.pk == dead.pk and again.status == JobStatus.QUEUED  # resumed, not replaced
    assert "was lost" in again.stage and again.recoveries == 1
    assert [s["args"] for s in sent] == [[dead.pk]]
    index_rebuild_task.apply(args=[dead.pk], task_id=sent[0]["task_id"])
    done = job_get(dead.pk)
    assert done.status == JobStatus.SUCCEEDED, done.error
    assert read_current(root) not in (None, old_version)
    assert Job.objects.filter(kind=INDEX_REBUILD).count() == 1
    print(f"\n[fault 3b] the killed rebuild resumed by the next request in {answered:.2f}s")
