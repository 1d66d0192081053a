"""Drives the demo dashboard in headless Chromium (Debian's chromium through chromedriver) the
way a newcomer would: open it, wait for live numbers, press the launch-date button, wait for the
cash-flow projection to move, and save a screenshot.

usage: dashboard.py URL SCREENSHOT CHROMIUM CHROMEDRIVER
Prints one JSON object of what it observed; exits 1 with a message (and a *-failed.png
screenshot) when something did not happen in time.
"""
import json
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

TIMEOUT = 90  # seconds per step; the demo settles in a few


def number(text):
    text = text.replace(",", "").replace("ms", "").strip()
    try:
        return float(text)
    except ValueError:
        return None


# The page re-renders its tables every second and its chart on every poll, so elements found
# now can be gone a moment later: read everything in one script call, atomically.
def row(driver, table, key):
    return driver.execute_script(
        "const tr = [...document.querySelectorAll('#' + arguments[0] + ' tr')].find(r => r.dataset.key === arguments[1]);"
        "return tr ? [...tr.cells].map(c => c.textContent) : [];", table, key)


def months(driver):
    return driver.execute_script("return [...document.querySelectorAll('#cashflow-chart rect')].map(r => r.dataset.month)")


def lag_groups(driver):
    return driver.execute_script("return [...document.querySelectorAll('#lag tr')].map(r => r.dataset.key).filter(k => k)")


def main() -> int:
    url, shot, chromium, chromedriver = sys.argv[1:5]
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    # As root in a sandbox with a closed network: no sandbox, no GPU, no background traffic.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="slate-chromium-")
    opts.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    seen = {}
    step = "open"
    try:
        driver.get(url)
        wait = WebDriverWait(driver, TIMEOUT, poll_frequency=0.25)

        step = "live status and throughput of every stage"
        wait.until(lambda d: d.find_element(By.ID, "status").text == "live")

        def flowing(d):
            sql = row(d, "stages", "sink sql")
            enr = row(d, "stages", "enricher emitted")
            return len(sql) == 3 and len(enr) == 3 and (number(sql[2]) or 0) > 0 and (number(sql[1]) or 0) > 0 and sql

        seen["sink_sql_row"] = wait.until(flowing)

        step = "freshness p50/p99 of the SQL sink"
        seen["freshness_sql_row"] = wait.until(
            lambda d: (r := row(d, "freshness", "sink sql")) and number(r[1]) is not None and number(r[2]) is not None and r)
        seen["lag_groups"] = wait.until(lambda d: lag_groups(d))
        seen["dead_lettered"] = driver.find_element(By.ID, "dlq-total").text

        step = "the featured production in the analyst API"
        wait.until(lambda d: d.find_element(By.ID, "launch-panel").is_displayed())
        before = wait.until(lambda d: (t := d.find_element(By.ID, "featured-launch").text) and t != "–" and t)
        months_before = wait.until(lambda d: months(d))

        step = "press the launch-date button"
        driver.find_element(By.ID, "launch-btn").click()
        step = "the projection to move through the pipeline"
        wait.until(lambda d: d.find_element(By.ID, "launch-status").get_attribute("data-state") in ("updated", "failed"))
        status = driver.find_element(By.ID, "launch-status")
        if status.get_attribute("data-state") != "updated":
            raise RuntimeError("launch change failed: " + status.text)
        after = driver.find_element(By.ID, "featured-launch").text
        months_after = wait.until(lambda d: (m := months(d)) != months_before and m)
        seen.update(launch_before=before, launch_after=after, months_before=months_before, months_after=months_after,
                    launch_status=status.text)
        driver.save_screenshot(shot)
        seen["screenshot"] = shot
        print(json.dumps(seen))
        return 0
    except Exception as e:  # report which step stalled, with what the page showed
        failed = shot.replace(".png", "-failed.png")
        try:
            driver.save_screenshot(failed)
        except Exception:
            pass
        print(f"dashboard test failed at step '{step}': {type(e).__name__}: {e}; seen so far: {json.dumps(seen)}; "
              f"screenshot: {failed}", file=sys.stderr)
        return 1
    finally:
        driver.quit()


if __name__ == "__main__":
    t0 = time.time()
    code = main()
    print(f"dashboard.py finished in {time.time() - t0:.1f}s", file=sys.stderr)
    sys.exit(code)
