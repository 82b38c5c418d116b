"""A signed-in user requests a generation and watches it finish in a real browser, with a
real Celery worker (Redis) running the tiny stand-in models."""

import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from generation.models import Generation
from tests.e2e.conftest import broken_images, screenshot, sign_in
from tests.generation.conftest import _torch_one_thread, gen_settings  # noqa: F401 (fixtures)
from tests.generation.test_worker import _dead, _worker_env
from tests.helpers import sending_to, start_worker, stop_worker

pytestmark = [
    pytest.mark.browser,
    pytest.mark.celery,
    pytest.mark.django_db(transaction=True),
]

PROMPT = "quiet hills by Chiyo Hanabusa, ukiyo-e, landscape"
TERMINAL = ("succeeded", "failed", "cancelled")

# Runs in the page from the moment it loads: a sample of the progress box whenever it
# changes, plus a token that a reload would lose.
WATCH = """() => {
    window.__pageToken = Math.random().toString(36);
    window.__seen = [];
    const sample = () => {
        const row = [
            document.getElementById("job-status").textContent.trim(),
            document.getElementById("job-stage").textContent.trim(),
            Number(document.getElementById("job-progress").value),
        ];
        const last = window.__seen[window.__seen.length - 1];
        if (!last || last.join("|") !== row.join("|")) window.__seen.push(row);
    };
    sample();
    setInterval(sample, 50);
    return window.__pageToken;
}"""


@pytest.fixture
def worker(gen_settings, indexed_demo, tmp_path, redis_server):  # noqa: F811 (fixture imported above)
    """One worker on all three generation queues and enough LoRA steps that training
    spans several of the page's 1 s polls: 40 steps once finished between two polls on a
    fast CPU (the page went from caching straight to done), so the test saw no training."""
    url = redis_server.url(0)
    env = _worker_env(
        gen_settings,
        url,
        LORA_STEPS=200,
        LORA_CHECKPOINT_EVERY=50,
    )
    log = tmp_path / "worker.log"
    with sending_to(url):
        proc = start_worker(env, queues="celery,training,rendering", log=log)
        try:
            yield proc, log
        finally:
            stop_worker(proc)


def test_request_a_generation_and_watch_it_finish(live_server, worker, browser_page, page_errors):
    proc, log = worker
    started = time.monotonic()
    get_user_model().objects.create_user("painter", "", "pw")  # a normal user, not staff
    page = browser_page
    sign_in(page, live_server.url, "painter", "pw", "/generate/")
    page.wait_for_selector("#generate-form")
    assert page.locator(".banner", has_text="tiny stand-in model").count() == 1
    page.fill("#generate-form textarea[name=prompt]", PROMPT)
    page.fill("#generate-form input[name=seed]", "4")
    assert page.input_value("#generate-form input[name=steps]") == "3"  # the tiny settings
    # The form has the wide column (the list of one's generations the narrow one).
    form_width = page.eval_on_selector(".gen-form", "e => e.getBoundingClientRect().width")
    aside_width = page.eval_on_selector(".gen-layout aside", "e => e.getBoundingClientRect().width")
    assert form_width > 2 * aside_width, (form_width, aside_width)
    screenshot(page, "generate-form")
    page.click("#generate-form button[type=submit]")
    page.wait_for_url("**/generate/*/")
    generation = Generation.objects.get()
    assert page.url.endswith(f"/generate/{generation.pk}/")
    token = page.evaluate(WATCH)
    assert PROMPT in page.inner_text("h2")

    # Watch the progress box change with no reload, until the job is over.
    mid_shot = False
    deadline = time.monotonic() + 150  # ~50 s on an idle 2-core machine; shared, it varies
    while True:
        _dead(proc, log)
        status = page.inner_text("#job-status")
        if status in TERMINAL:
            break
        stage = page.inner_text("#job-stage")
        value = float(page.eval_on_selector("#job-progress", "e => e.value"))
        if not mid_shot and status == "running" and stage.startswith("training") and value > 0:
            screenshot(page, "generation-progress")
            mid_shot = True
        assert time.monotonic() < deadline, f"still {status} / {stage}:\n{log.read_text()[-3000:]}"
        page.wait_for_timeout(100)
    generation.refresh_from_db()
    watched = time.monotonic() - started
    assert status == "succeeded", generation.job.error
    assert page.evaluate("window.__pageToken") == token  # the same document all along
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1

    # The page's sampler runs every 50 ms: let it record the end state the loop just saw.
    page.wait_for_function("s => window.__seen.at(-1)[0] === s", arg=status, timeout=5000)
    seen = page.evaluate("window.__seen")
    statuses = [s for s, _stage, _p in seen]
    assert statuses[0] in ("queued", "running") and statuses[-1] == "succeeded", seen
    training = [(st, p) for s, st, p in seen if s == "running" and st.startswith("training")]
    assert training, seen  # training was shown while it ran ...
    assert any(0 < p < 1 for _stage, p in training), seen  # ... with its progress bar moving
    # The tiny render takes a fraction of a second: the page's poll may never catch the
    # rendering stage, so only its order is checked when it was seen.
    order = [st.split(" ")[0] for _s, st, _p in seen]
    if "rendering" in order:
        assert order.index("rendering") > max(i for i, o in enumerate(order) if o == "training")
    assert len({stage for _s, stage, _p in seen}) >= 4, seen  # several stages went by
    assert page.eval_on_selector("#job-progress", "e => e.value") == 1

    # The result arrived in place: the image (and the prompt-only baseline), the LoRAs,
    # the retrieved paintings, the provenance; the tiny stand-in is named on the page.
    page.wait_for_selector("#result .pair img")
    result = page.inner_text("#result")
    assert "MythraGen: two LoRAs mixed" in result and "Prompt-only baseline" in result
    images = page.eval_on_selector_all(
        "#result .pair img", "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])"
    )
    assert images == [[64, 64], [64, 64]], images
    assert broken_images(page, "#result img") == []
    assert page.locator("#result .loras .card").count() == 2
    assert page.locator("#result .loras .status").all_inner_texts() == ["ready", "ready"]
    assert "Retrieved paintings" in result
    banner = page.locator(".banner", has_text="tiny stand-in model").inner_text()
    # Named by its folder's name: the server's path stays private.
    assert "tiny stand-in model" in banner and Path(generation.base_model).name in banner
    assert generation.base_model not in banner
    assert page.is_visible("#rerun-form") and not page.is_visible("#cancel-form")
    assert not page.is_visible("#job-error")
    screenshot(page, "generation-done")

    assert generation.is_tiny and generation.image and generation.user.username == "painter"
    page.click("#result details summary")  # provenance, folded by default
    provenance = page.inner_text("#result pre.json")
    assert '"seed": 4' in provenance and PROMPT in provenance, provenance

    # The user's list and the gallery show the finished result, marked as tiny-model work.
    page.goto(f"{live_server.url}/generate/gallery/")
    card = page.locator(f".card:has(a[href='/generate/{generation.pk}/'])")
    assert "tiny model" in card.inner_text()
    assert broken_images(page, ".grid img") == []
    page.goto(f"{live_server.url}/generate/")
    assert "succeeded" in page.inner_text("aside")
    assert page_errors == []
    print(f"request to result: {watched:.1f} s; test body {time.monotonic() - started:.1f} s")
