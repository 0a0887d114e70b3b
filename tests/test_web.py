"""`ddrm-fast serve` in a real browser: Debian's headless Chromium driven by Selenium (nothing downloads a browser).

The server runs as a user runs it, in its own process on a free loopback port with the embedded model. A visitor
uploads a small photo, picks sr4 and few steps, restores, and gets the figure, the PSNR line and a PNG of the right
size to download; a broken upload is one sentence on the page and the server goes on. Skipped, saying why, only
where gradio, selenium or Chromium is missing (`.ci/run` installs Chromium when it can).
"""
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from PIL import Image

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "ddrm_fast", "data", "astronaut.png")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

pytest.importorskip("gradio", reason="the web extra is not installed: pip install 'ddrm_fast[web]'")
pytest.importorskip("selenium", reason="selenium is not installed (the test extra)")
pytestmark = pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                                reason="no Chromium: apt-get install chromium chromium-driver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`ddrm-fast serve` on a free loopback port; yields its URL and its temporary folder's parent."""
    port = _free_port()
    tmp = tmp_path_factory.mktemp("serve")
    env = dict(os.environ, TMPDIR=str(tmp))  # its temporary folder, to see it removed
    proc = subprocess.Popen([sys.executable, "-m", "ddrm_fast", "serve", "--port", str(port), "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"the server stopped: {proc.stdout.read()}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the server did not answer within 120 s")
    yield url, tmp
    proc.terminate()
    proc.wait(timeout=30)
    assert os.listdir(tmp) == []  # everything it wrote was in its temporary folder, removed when it stopped


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1300"):
        options.add_argument(arg)
    # every request the page makes, failed ones too (an offline request to a font server never completes, so the
    # page's own resource timings would not show it)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def _wait(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _open(driver, url):
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#run"), 60, "the page")


def _upload(driver, element_id: str, path: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=file]").send_keys(path)
    name = os.path.basename(path)
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, f'#{element_id} td.filename[aria-label="{name}"]'), 30,
          f"the upload of {name}")


def _set_number(driver, element_id: str, value):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=number]")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.TAB)


def _choose(driver, element_id: str, value: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f"#{element_id} input")
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(value)
    option = _wait(lambda: [li for li in driver.find_elements(By.CSS_SELECTOR, "ul li.item")
                            if li.text.strip().splitlines()[-1:] == [value]], 10, f"option {value}")
    option[0].click()


def test_a_visitor_restores_a_photo_and_downloads_it(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = server
    photo = tmp_path / "face.png"
    Image.open(EXAMPLE).crop((88, 40, 152, 104)).save(photo)  # 64x64
    _open(browser, url)
    _upload(browser, "photo", str(photo))
    _choose(browser, "task", "sr4")
    _set_number(browser, "steps", 4)
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    scores = _wait(lambda: "PSNR" in browser.find_element(By.CSS_SELECTOR, "#scores").text
                   and browser.find_element(By.CSS_SELECTOR, "#scores").text, 180, "the PSNR line")
    assert "DDRM" in scores and "bicubic" in scores and "dB against bicubic" in scores
    figure = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#figure img"), 30, "the figure")
    assert figure[0].get_attribute("src")
    link = _wait(lambda: [a for a in browser.find_elements(By.CSS_SELECTOR, "#download a[download]")
                          if a.get_attribute("href")], 30, "the download link")[0]
    data = urllib.request.urlopen(link.get_attribute("href"), timeout=10).read()
    restored = Image.open(io.BytesIO(data))
    assert restored.format == "PNG" and restored.size == (64, 64)
    # nothing the page loaded came from anywhere but this server
    sources = [json.loads(entry["message"])["message"] for entry in browser.get_log("performance")]
    sources = [m["params"]["request"]["url"] for m in sources if m.get("method") == "Network.requestWillBeSent"]
    assert sources and all(s.startswith(url.rstrip("/")) or s.startswith("data:") or s.startswith("blob:")
                           for s in sources), [s for s in sources if not s.startswith(url.rstrip("/"))]


def test_a_bundled_photo_deblurred_beats_wiener_on_the_page(server, browser, tmp_path):
    """The bundled held-out photo, deblurred (the bundled motion blur: no kernel uploaded) with the defaults; the
    screenshot (DDRM_FAST_SCREENSHOTS, else the test's folder) is the README's."""
    from selenium.webdriver.common.by import By

    url, _ = server
    _open(browser, url)
    _choose(browser, "bundled", "coffee.png")
    _choose(browser, "task", "deblur")
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    scores = _wait(lambda: "PSNR" in browser.find_element(By.CSS_SELECTOR, "#scores").text
                   and browser.find_element(By.CSS_SELECTOR, "#scores").text, 300, "the PSNR line")
    gain = float(scores.split(" dB against Wiener")[0].split("— ")[-1])
    assert gain > 2, scores
    shots = os.environ.get("DDRM_FAST_SCREENSHOTS") or str(tmp_path)
    os.makedirs(shots, exist_ok=True)
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(os.path.join(shots, "serve.png"))


def test_a_broken_upload_is_one_sentence_and_the_server_goes_on(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, _ = server
    junk = tmp_path / "broken.png"
    junk.write_bytes(b"this is not an image")
    _open(browser, url)
    _upload(browser, "photo", str(junk))
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    message = _wait(lambda: [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".toast-body")
                             if "not a readable image" in e.text], 60, "the error on the page")[0]
    assert "Traceback" not in message and "the photo" in message
    assert urllib.request.urlopen(url, timeout=10).status == 200  # still serving
    # and a photo too large for the server is refused before it is decoded
    big = tmp_path / "big.png"
    Image.new("RGB", (1024, 600)).save(big)
    _open(browser, url)
    _upload(browser, "photo", str(big))
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    _wait(lambda: [e for e in browser.find_elements(By.CSS_SELECTOR, ".toast-body")
                   if "at most 512 pixels a side" in e.text], 60, "the size refusal")


def test_a_visitor_who_leaves_frees_the_device(server, browser, tmp_path):
    """One job at a time: a long job (the bundled photo, 200 steps, 8 samples: minutes here) is cancelled when its
    visitor leaves, so the next visitor's short job is not stuck behind it."""
    from selenium.webdriver.common.by import By

    url, _ = server
    _open(browser, url)
    _choose(browser, "bundled", "coffee.png")
    _set_number(browser, "steps", 200)
    _set_number(browser, "samples", 8)
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    _wait(lambda: "sampling" in browser.find_element(By.CSS_SELECTOR, "body").text, 60, "the long job's progress")
    browser.get("about:blank")  # the visitor leaves
    photo = tmp_path / "face.png"
    Image.open(EXAMPLE).crop((88, 40, 152, 104)).save(photo)
    start = time.time()
    _open(browser, url)
    _upload(browser, "photo", str(photo))
    _set_number(browser, "steps", 2)
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    _wait(lambda: "PSNR" in browser.find_element(By.CSS_SELECTOR, "#scores").text, 120, "the next visitor's result")
    assert time.time() - start < 120


def test_a_second_server_on_the_same_port_is_one_line(server, tmp_path):
    url, _ = server
    port = url.rstrip("/").rsplit(":", 1)[1]
    p = subprocess.run([sys.executable, "-m", "ddrm_fast", "serve", "--port", port, "--device", "cpu"],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert p.returncode == 2
    want = (f"ddrm-fast: error: cannot listen on 127.0.0.1:{port} (the port is in use, or the address is not this "
            f"machine's); choose another --port or --host")
    assert p.stderr.strip().splitlines() == [want]
    assert os.listdir(tmp_path) == []  # its temporary folder removed
