"""The step-by-step page of one backward pass: `render(draw_graph(loss), "step.html")`.

The page is held against the engine: every op's backward is wrapped to record what the engine
itself did during `loss.backward()` (which op, in which order, the gradient that arrived and what
it sent to each input), and the steps embedded in the page must be exactly that. Then a real
headless browser (chromium, driven by selenium) loads the page from disk and steps through it:
no console error, each step highlights another op, the last shows every parameter's gradient.
Without selenium or chromium the browser tests skip with the reason (CI installs both, and a
skip there is a failure).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time

import numpy as np
import pytest

from tinygrad_mnist import Function, Tensor, nn
from tinygrad_mnist import functional as F
from tinygrad_mnist.backward_steps import mean_is_noise, record_steps, summary
from tinygrad_mnist.viz import draw_graph, render

STEPS = re.compile(r'<script type="application/json" id="backward-steps">(.*?)</script>', re.S)
GRAPH = re.compile(r'<script type="application/json" id="backward-graph">(.*?)</script>', re.S)


# ----- graphs --------------------------------------------------------------------------------------
def mlp_step(batch=4):
    rng = np.random.default_rng(0)
    model = nn.mlp([784, 32, 10], rng=rng)
    images = Tensor(rng.random((batch, 784), dtype=np.float32), name="images")
    loss = F.cross_entropy(model(images), rng.integers(0, 10, size=batch))
    loss.name = "loss"
    return loss, model


def used_twice_and_diamond():
    """a is used three times (twice by Mul, once by Add); d = e * e + e is a diamond."""
    a = Tensor(2.0, requires_grad=True, name="a")
    e = a * a + a
    e.name = "e"
    d = e * e + e
    d.name = "d"
    return d, None


def branch_without_grad():
    """A constant branch (no requires_grad) beside a parameter's; a custom op returning None."""

    class HalfGrad(Function):
        """out = x * c.   d out/d x = c (and no gradient for c: backward returns None)."""

        @staticmethod
        def forward(ctx, x, c):
            ctx.save_for_backward(c)
            return x * c

        @staticmethod
        def backward(ctx, grad_out):
            (c,) = ctx.saved
            return grad_out * c, None

    w = Tensor([1.0, -2.0, 3.0], requires_grad=True, name="w")
    v = Tensor([0.5, 0.5, 0.5], requires_grad=True, name="v")
    constant = Tensor([4.0, 5.0, 6.0], name="constant")
    root = (HalfGrad.apply(w, v) + constant * 2.0).sum()
    root.name = "root"
    return root, None


GRAPHS = {"mlp step": mlp_step, "used twice and a diamond": used_twice_and_diamond, "branch without grad": branch_without_grad}


def engine_visits(root, monkeypatch):
    """Run root.backward(retain_graph=True) with every op's backward wrapped: [(ctx, grad_out, sent)]
    in the order the engine called them."""
    visits, classes, stack, seen = [], set(), [root], set()
    while stack:  # every op class in the graph (the test's own walk, not the engine's)
        tensor = stack.pop()
        if tensor.grad_fn is not None and id(tensor) not in seen:
            seen.add(id(tensor))
            classes.add(tensor.grad_fn.function)
            stack.extend(tensor.grad_fn.inputs)
    for function in classes:
        original = function.backward

        def recording(ctx, grad_out, original=original):
            sent = original(ctx, grad_out)
            visits.append((ctx, np.array(grad_out), sent if type(sent) is tuple else (sent,)))
            return sent

        monkeypatch.setattr(function, "backward", staticmethod(recording))
    root.backward(retain_graph=True)
    monkeypatch.undo()
    return visits


def page_data(path):
    text = path.read_text(encoding="utf-8")
    return json.loads(STEPS.search(text).group(1)), json.loads(GRAPH.search(text).group(1))


def assert_summarises(entry, array):
    array = np.asarray(array)
    assert entry["shape"] == list(array.shape)
    if "values" in entry:
        np.testing.assert_allclose(entry["values"], array.tolist(), rtol=1e-6)
    else:
        np.testing.assert_allclose([entry["min"], entry["max"]], [array.min(), array.max()], rtol=1e-6)
        np.testing.assert_allclose(entry["mean"], array.mean(dtype=np.float64), rtol=1e-6, atol=1e-12)


# ----- the page against the engine ---------------------------------------------------------------
@pytest.mark.parametrize("build", GRAPHS.values(), ids=GRAPHS.keys())
def test_the_page_s_steps_are_the_engine_s_op_visits_in_order_with_the_same_gradients(build, dot_program, tmp_path, monkeypatch):
    root, model = build()
    visits = engine_visits(root, monkeypatch)
    picture = draw_graph(root, names=model)
    written = render(picture, tmp_path / "step.html")
    assert written == tmp_path / "step.html"
    steps, graph = page_data(written)
    _, node_ids, _ = picture.drawn_from

    assert [step["op"] for step in steps] == [ctx.function.__name__ for ctx, _, _ in visits]
    for step, (ctx, grad_out, sent) in zip(steps, visits):
        assert step["node"] == node_ids[ctx]
        assert step["output"]["node"] == node_ids[next(t for t in node_ids if isinstance(t, Tensor) and t.grad_fn is ctx)]
        assert_summarises(step["output"]["grad"], grad_out)
        assert [entry["node"] for entry in step["inputs"]] == [node_ids.get(tensor) for tensor in ctx.inputs]
        for entry, tensor, engine_sent in zip(step["inputs"], ctx.inputs, sent):
            if engine_sent is None or not tensor.requires_grad:
                assert entry["sent"] is None
            else:
                assert_summarises(entry["sent"], engine_sent)

    # the last sum each tensor received is the .grad backward() left on it
    last_total = {}
    for step in steps:
        for entry in step["inputs"]:
            if entry["sent"] is not None:
                last_total[entry["node"]] = entry["total"]
    tensors = {node_id: tensor for tensor, node_id in node_ids.items() if isinstance(tensor, Tensor)}
    parameters = [node_id for node_id, info in graph["tensors"].items() if info["kind"] == "parameter"]
    assert parameters
    for node_id in parameters:
        if tensors[node_id].grad is None:  # v in "branch without grad": its op returned None for it
            assert node_id not in last_total
        else:
            assert_summarises(last_total[node_id], tensors[node_id].grad)


def test_a_tensor_used_three_times_accumulates_one_gradient_per_use(dot_program, tmp_path):
    a = Tensor(2.0, requires_grad=True, name="a")
    b = a * a + a  # db/da = 2a + 1 = 5
    b.name = "b"
    b.backward(retain_graph=True)
    steps, _ = page_data(render(draw_graph(b), tmp_path / "step.html"))
    into_a = [entry for step in steps for entry in step["inputs"] if entry["name"] == "a"]
    assert [entry["count"] for entry in into_a] == [1, 2, 3]
    assert [entry["sent"]["values"] for entry in into_a] == [1.0, 2.0, 2.0]  # from Add, then Mul's two inputs
    assert [entry["total"]["values"] for entry in into_a] == [1.0, 3.0, 5.0]
    assert a.grad.item() == 5.0


def test_the_page_needs_the_saved_arrays_and_says_how_to_keep_them(tmp_path):
    loss, model = mlp_step()
    loss.backward()  # releases what the ops saved
    with pytest.raises(ValueError, match=r"retain_graph=True"):
        render(draw_graph(loss, names=model), tmp_path / "step.html")
    assert not (tmp_path / "step.html").exists()


def test_a_picture_drawn_before_backward_makes_the_same_page(dot_program, tmp_path):
    loss, model = mlp_step()
    picture = draw_graph(loss, names=model)  # no gradients in the boxes yet
    before, _ = page_data(render(picture, tmp_path / "before.html"))
    loss.backward()
    assert before[-1]["inputs"][1]["name"] == "0.weight"
    assert_summarises(before[-1]["inputs"][1]["total"], model[0].weight.grad)


def test_render_html_needs_a_picture_from_draw_graph(tmp_path):
    import graphviz

    with pytest.raises(TypeError, match="draw_graph"):
        render(graphviz.Digraph(), tmp_path / "step.html")


def test_the_page_is_small_enough_to_commit(dot_program, tmp_path):
    loss, model = mlp_step()
    loss.backward(retain_graph=True)
    written = render(draw_graph(loss, names=model), tmp_path / "step.html")
    assert written.stat().st_size < 80_000
    assert "http://" not in re.sub(r'xmlns(:xlink)?="http://www\.w3\.org/[^"]*"|"http://www\.w3\.org/[^"]*"', "", written.read_text())


def test_summaries_show_small_gradients_by_value_and_large_ones_by_statistics():
    assert summary(np.array([1.0, -2.0])) == {"shape": [2], "values": [1.0, -2.0]}
    large = summary(np.arange(12.0).reshape(3, 4))
    assert (large["shape"], large["min"], large["mean"], large["max"]) == ([3, 4], 0.0, 5.5, 11.0)
    assert summary(np.array([np.inf, np.nan]))["values"] == ["inf", "NaN"]  # JSON has no inf


def test_a_mean_of_rounding_noise_is_told_apart_from_a_real_one():
    rng = np.random.default_rng(0)
    logits_grad = (rng.random((4, 10), dtype=np.float32) - 0.5)
    logits_grad -= logits_grad.mean(axis=1, keepdims=True)  # rows sum to 0 up to float32 rounding
    assert mean_is_noise(logits_grad.mean(dtype=np.float64), logits_grad)
    assert not mean_is_noise(1e-3, logits_grad)
    assert not mean_is_noise(0.0, np.zeros(8, dtype=np.float32))  # an exact 0 is shown as 0


def test_record_steps_without_a_drawing_names_ops_and_tensors():
    root, _ = used_twice_and_diamond()
    steps = record_steps(root)
    assert [step["op"] for step in steps] == ["Add", "Mul", "Add", "Mul"]
    assert steps[0]["output"]["name"] == "d" and steps[0]["node"] is None


# ----- in a real browser -------------------------------------------------------------------------
def _find(*names):
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def browser():
    """A headless chromium driven by selenium (chromium and chromedriver from Debian's packages)."""
    from conftest import _skip_or_fail

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _skip_or_fail("selenium is not installed (pip install -e \".[test]\")", "CI")
    chromium = _find("chromium", "chromium-browser", "google-chrome")
    driver_path = _find("chromedriver")
    if chromium is None or driver_path is None:
        _skip_or_fail("no headless browser: apt-get install chromium chromium-driver", "CI")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def mlp_page(tmp_path_factory):
    if shutil.which("dot") is None:
        pytest.skip("graphviz `dot` is not installed (apt-get install graphviz)")
    loss, model = mlp_step()
    loss.backward(retain_graph=True)
    return render(draw_graph(loss, names=model), tmp_path_factory.mktemp("page") / "step.html")


def highlighted(driver):
    """(op node ids highlighted as visited, output node ids highlighted, receiving node ids)."""
    return driver.execute_script("""
        const ids = cls => [...document.querySelectorAll('g.node.' + cls)].map(g => g.querySelector('title').textContent);
        return [ids('current-op'), ids('current-output'), ids('receiving')];""")


def test_the_page_loads_in_a_browser_without_a_console_error(browser, mlp_page):
    browser.get(mlp_page.as_uri())
    assert browser.find_element("id", "counter").text == "step 0 of 4"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]
    assert errors == []


def test_stepping_forward_and_back_changes_what_is_highlighted(browser, mlp_page):
    steps, _ = page_data(mlp_page)
    browser.get(mlp_page.as_uri())
    assert highlighted(browser) == [[], [], []]
    seen = []
    for index, step in enumerate(steps, start=1):
        browser.find_element("id", "next").click()
        ops, outputs, receiving = highlighted(browser)
        assert ops == [step["node"]] and outputs == [step["output"]["node"]]
        assert sorted(receiving) == sorted(entry["node"] for entry in step["inputs"] if entry["sent"])
        assert browser.find_element("id", "counter").text == f"step {index} of {len(steps)}"
        seen.append(ops[0])
    assert len(set(seen)) == len(steps)  # every step highlights another op
    browser.find_element("id", "prev").click()
    assert highlighted(browser)[0] == [steps[-2]["node"]]
    assert browser.get_log("browser") == []


def test_the_last_step_shows_every_parameter_s_gradient(browser, mlp_page):
    steps, graph = page_data(mlp_page)
    browser.get(mlp_page.as_uri())
    rows = browser.find_elements("css selector", "#parameters tbody tr")
    assert [row.get_attribute("data-complete") for row in rows] == ["no"] * 4
    browser.find_element("id", "last").click()
    rows = browser.find_elements("css selector", "#parameters tbody tr")
    parameters = {node_id: info["name"] for node_id, info in graph["tensors"].items() if info["kind"] == "parameter"}
    assert sorted(row.get_attribute("data-node") for row in rows) == sorted(parameters)
    assert [row.get_attribute("data-complete") for row in rows] == ["yes"] * 4
    for row in rows:
        assert "min" in row.text and "max" in row.text  # the gradient's statistics, not "not reached yet"
    # each parameter's box shows its red gradient row now
    hidden = browser.execute_script("""
        return [...document.querySelectorAll('g.node.done .grad-text')].filter(t => getComputedStyle(t).visibility === 'hidden').length;""")
    done = browser.execute_script("return [...document.querySelectorAll('g.node.done')].map(g => g.querySelector('title').textContent);")
    assert hidden == 0 and set(parameters) <= set(done)


def test_play_walks_to_the_end_and_the_address_remembers_the_step(browser, mlp_page):
    browser.get(mlp_page.as_uri() + "#step=3")
    assert browser.find_element("id", "counter").text == "step 3 of 4"
    browser.execute_script("document.getElementById('play').click()")
    deadline = time.monotonic() + 10
    while browser.find_element("id", "counter").text != "step 4 of 4" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert browser.find_element("id", "counter").text == "step 4 of 4"
    assert browser.execute_script("return location.hash") == "#step=4"
    assert browser.get_log("browser") == []
