"""The viewer's page in a real headless Chromium: it renders, its filters and links work."""

import os
import shutil

import pytest
from support.viewer_run import CHROMEDRIVER, CHROMIUM, DOCS, IMG, SCRIPT


@pytest.fixture
def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1100",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        assert driver.service.process is None or driver.service.process.poll() is not None


@pytest.mark.browser
def test_page_works_in_chromium(run, page, chromium, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run_dir, steps, _ = run
    driver = chromium
    driver.get((run_dir / "view.html").as_uri())

    def visible() -> list[str]:
        return [
            r.get_attribute("data-task")
            for r in driver.find_elements(By.CSS_SELECTOR, "details.ep")
            if r.is_displayed()
        ]

    # Opens on the last step; the step selector switches the visible episodes.
    assert visible() == [e["task"]["id"] for e in steps[2]]
    Select(driver.find_element(By.ID, "step")).select_by_value("1")
    assert visible() == [e["task"]["id"] for e in steps[1]]
    driver.find_element(By.ID, "task").send_keys(steps[1][2]["task"]["id"])
    assert visible() == [steps[1][2]["task"]["id"]] * 2
    Select(driver.find_element(By.ID, "rfilter")).select_by_value("none")
    rows = [r for r in driver.find_elements(By.CSS_SELECTOR, "details.ep") if r.is_displayed()]
    assert [r.get_attribute("data-i") for r in rows] == ["2"]

    # The untrusted reply renders as text and runs nothing.
    scripts_before = len(driver.find_elements(By.TAG_NAME, "script"))
    rows[0].find_element(By.TAG_NAME, "summary").click()
    body = rows[0].find_element(By.CSS_SELECTOR, ".body")
    assert SCRIPT in body.text and IMG in body.text
    assert len(driver.find_elements(By.TAG_NAME, "script")) == scripts_before
    assert not body.find_elements(By.TAG_NAME, "img")
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert "pwned" not in driver.title
    marked = [
        int(b.get_attribute("title").split()[1]) for b in body.find_elements(By.CSS_SELECTOR, ".toks b")
    ]
    ep = steps[1][2]
    assert marked == [i for i, m in zip(ep["token_ids"], ep["loss_mask"]) if m]

    # Sorting by reward, then the screenshot: step 1, the multi-turn success opened.
    driver.find_element(By.ID, "task").clear()
    driver.execute_script("document.getElementById('task').dispatchEvent(new Event('input'))")
    Select(driver.find_element(By.ID, "rfilter")).select_by_value("all")
    Select(driver.find_element(By.ID, "sort")).select_by_value("desc")
    order = [
        r.get_attribute("data-i")
        for r in driver.find_elements(By.CSS_SELECTOR, "details.ep")
        if r.is_displayed()
    ]
    assert order == ["0", "3", "1", "2"]  # 1.25 > 0.25 > 0.2 > none
    rows[0].find_element(By.TAG_NAME, "summary").click()  # close the script episode again
    driver.find_element(By.CSS_SELECTOR, 'section[data-step="1"] details[data-i="0"] summary').click()
    shot = tmp_path / "viewer.png"
    assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    if os.environ.get("RLAGENT_UPDATE_DOCS") == "1":
        shutil.copy(shot, DOCS / "viewer.png")
        print(f"copied to {DOCS / 'viewer.png'}")
