//! The pytest plugin the harness writes beside the suites and adds to every pytest it runs
//! ([super::pytest]): Python text, kept apart from the Rust that reads what it records.

/// The pytest plugin the harness adds (`-p xtask_pytest`): it records every collected test with
/// its markers before any deselection, and, after the markers deselected theirs, keeps only this
/// shard's tests: by duration when `XTASK_PYTEST_DURATIONS` names them (the same split as
/// [`super::shard::split`], from the loads in `XTASK_PYTEST_LOADS`; the kept node ids written to
/// `XTASK_PYTEST_ASSIGN`), else by the same FNV-1a hash as [`super::shard_of`]; for a worker of
/// the plan, only the node ids in `XTASK_PYTEST_ONLY` (once collected, it waits for its turn while
/// `XTASK_PYTEST_WAIT` names a file that does not exist yet). It reports each test as it starts
/// and ends.
pub(super) const PYTEST_PLUGIN: &str = r#""""Written by `cargo xtask`: records the collected tests, selects this shard, reports each
test as it starts and ends."""
import json
import os
import time

import pytest


def _fnv1a(text):
    value = 0xCBF29CE484222325
    for byte in text.encode("utf-8"):
        value ^= byte
        value = (value * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


def _case_key(nodeid):
    # pytest's JUnit classname and name (its mangle_test_address), as the report keys them.
    at = nodeid.find("[")
    path, params = (nodeid[:at], nodeid[at:]) if at >= 0 else (nodeid, "")
    names = path.split("::")
    names[0] = names[0].replace("/", ".")
    if names[0].endswith(".py"):
        names[0] = names[0][:-3]
    last = names.pop() + params
    return ".".join(names) + "::" + last


def _by_duration(items, count, planned, mean, loads, whole=None):
    # The harness planned the recorded tests; the others go, at the suite's mean and in the
    # order of their keys, each to the shard with the least time so far; all of them to one
    # shard when the harness keeps the suite whole.
    if whole is not None:
        return {item.nodeid: whole for item in items}
    shard_of = {}
    unknown = []
    for item in items:
        key = _case_key(item.nodeid)
        if key in planned:
            shard_of[item.nodeid] = planned[key]
        else:
            unknown.append((key, item.nodeid))
    for _, nodeid in sorted(unknown):
        least = min(range(count), key=lambda k: (loads[k], k))
        loads[least] += mean
        shard_of[nodeid] = least + 1
    return shard_of


_WORKER = os.environ.get("XTASK_WORKER") or os.environ.get("PYTEST_XDIST_WORKER") or "0"
# node id -> (absolute path, line of its definition), the failing line, its reports so far.
_WHERE = {}
_FAILED_AT = {}
_STATE = {}


def _emit(record):
    events = os.environ.get("XTASK_PYTEST_EVENTS")
    if not events:
        return
    record["worker"] = _WORKER
    # The harness reads this file every so often: the test's own time places it on the timeline.
    record["at"] = time.time()
    line = (json.dumps(record) + "\n").encode("utf-8")
    # One appending write per line: several workers may share the file.
    fd = os.open(events, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def _path_of(item):
    path = getattr(item, "path", None) or getattr(item, "fspath", None)
    return str(path) if path is not None else None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items):
    for item in items:
        line = item.location[1]
        _WHERE[item.nodeid] = (_path_of(item), line + 1 if line is not None else None)
    record = os.environ.get("XTASK_PYTEST_RECORD")
    if record:
        with open(record, "w", encoding="utf-8") as out:
            for item in items:
                markers = sorted({mark.name for mark in item.iter_markers()})
                out.write(json.dumps({"nodeid": item.nodeid, "markers": markers}) + "\n")


class _ShardSelection:
    """After the markers deselected theirs (trylast): keeps this shard's tests, and of those a
    worker's share."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items):
        self._shard(config, items)
        self._only(config, items)

    def _shard(self, config, items):
        shard = os.environ.get("XTASK_PYTEST_SHARD")
        if not shard:
            return
        index, count = (int(part) for part in shard.split("/"))
        durations = os.environ.get("XTASK_PYTEST_DURATIONS")
        if durations:
            with open(durations, encoding="utf-8") as source:
                known = json.load(source)
            loads = [float(x) for x in os.environ["XTASK_PYTEST_LOADS"].split(",")]
            shard_of = _by_duration(items, count, known["plan"], known["mean"], loads, known.get("whole"))
            keep = [item for item in items if shard_of[item.nodeid] == index]
            # Every test of the split with its shard: what the harness reports for this shard.
            with open(os.environ["XTASK_PYTEST_ASSIGN"], "w", encoding="utf-8") as out:
                out.writelines(json.dumps([item.nodeid, shard_of[item.nodeid]]) + "\n" for item in items)
        else:
            keep = [item for item in items if _fnv1a(item.nodeid) % count == index - 1]
        kept = {item.nodeid for item in keep}
        drop = [item for item in items if item.nodeid not in kept]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    def _only(self, config, items):
        only = os.environ.get("XTASK_PYTEST_ONLY")
        if not only:
            return
        # A worker of the harness's plan: only its share, a file of node ids.
        with open(only, encoding="utf-8") as source:
            wanted = {line.rstrip("\n") for line in source if line.strip()}
        keep = [item for item in items if item.nodeid in wanted]
        drop = [item for item in items if item.nodeid not in wanted]
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep


def _take(queue, by_id):
    """The next test of the suite's queue (`NNNNN.todo` files, one node id each, in the harness's
    order): taken by renaming its file to `NNNNN.<worker>`, which only one worker can do. A test
    this worker did not collect stays taken by it; the harness reports it."""
    for name in sorted(os.listdir(queue)):
        if not name.endswith(".todo"):
            continue
        mine = os.path.join(queue, name[: -len(".todo")] + "." + _WORKER)
        try:
            os.rename(os.path.join(queue, name), mine)
        except OSError:
            continue  # another worker took it
        with open(mine, encoding="utf-8") as source:
            item = by_id.get(source.read().strip())
        if item is not None:
            return item
    return None


class _Next:
    """The test after this one, taken from the queue only when pytest asks what it needs (at this
    one's teardown, to keep the fixtures they share): a worker never holds a test that another
    could run while it runs its own."""

    def __init__(self, take):
        self._take = take
        self._taken = False
        self._item = None

    def item(self):
        if not self._taken:
            self._taken = True
            self._item = self._take()
        return self._item

    def listchain(self):
        item = self.item()
        return item.listchain() if item is not None else []

    def __getattr__(self, name):
        item = self.item()
        if item is None:
            raise AttributeError(name)
        return getattr(item, name)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session):
    queue = os.environ.get("XTASK_PYTEST_QUEUE")
    if not queue or session.config.option.collectonly:
        return None
    if session.testsfailed and not session.config.option.continue_on_collection_errors:
        raise session.Interrupted(f"{session.testsfailed} errors during collection")
    by_id = {item.nodeid: item for item in session.items}
    item = _take(queue, by_id)
    while item is not None:
        upcoming = _Next(lambda: _take(queue, by_id))
        item.config.hook.pytest_runtest_protocol(item=item, nextitem=upcoming)
        if session.shouldfail:
            raise session.Failed(session.shouldfail)
        if session.shouldstop:
            raise session.Interrupted(session.shouldstop)
        item = upcoming.item()
    return True


def pytest_collection_finish(session):
    go = os.environ.get("XTASK_PYTEST_WAIT")
    if go and not os.path.exists(go):
        # A worker started ahead of its turn: collected, it waits for the harness's word (its
        # deadline, the harness's, ends the wait if that never comes).
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"xtask: worker {_WORKER} collected, waiting for its turn ({go})")
        # The harness starts the next worker once this one is ready.
        open(go + ".ready", "w").close()
        while not os.path.exists(go):
            time.sleep(0.02)


def pytest_configure(config):
    config.pluginmanager.register(_ShardSelection(), "xtask_shard_selection")


def pytest_deselected(items):
    record = os.environ.get("XTASK_PYTEST_RECORD")
    if record:
        with open(record, "a", encoding="utf-8") as out:
            for item in items:
                out.write(json.dumps({"nodeid": item.nodeid, "markers": [], "deselected": True}) + "\n")


def pytest_runtest_logstart(nodeid, location):
    _STATE[nodeid] = {"outcome": "passed", "duration": 0.0, "message": None, "began": time.time()}
    _emit({"event": "started", "nodeid": nodeid})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    made = yield
    report = made.get_result()
    if report.failed and call.excinfo is not None and item.nodeid not in _FAILED_AT:
        # The deepest line of the test's own file in the traceback: where it failed.
        path = _path_of(item)
        for entry in reversed(list(call.excinfo.traceback)):
            if str(entry.path) == path:
                _FAILED_AT[item.nodeid] = entry.lineno + 1
                break


def _message(report):
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        return str(report.longrepr[2])
    return str(report.longrepr) if report.longrepr else None


def pytest_runtest_logreport(report):
    state = _STATE.setdefault(report.nodeid, {"outcome": "passed", "duration": 0.0, "message": None})
    state["duration"] += getattr(report, "duration", 0.0) or 0.0
    if report.failed:
        if state["outcome"] not in ("failed", "error"):
            state["outcome"] = "failed" if report.when == "call" else "error"
            state["message"] = _message(report)
    elif report.skipped and state["outcome"] == "passed":
        state["outcome"] = "skipped"
        reason = getattr(report, "wasxfail", None)
        state["message"] = "xfail: " + reason if reason is not None else _message(report)


def pytest_runtest_logfinish(nodeid, location):
    state = _STATE.pop(nodeid, {"outcome": "passed", "duration": 0.0, "message": None})
    path, line = _WHERE.get(nodeid, (None, None))
    _emit({
        "event": "finished",
        "nodeid": nodeid,
        "outcome": state["outcome"],
        "duration": state["duration"],
        "message": state["message"],
        "file": path,
        "line": _FAILED_AT.get(nodeid, line),
        "began": state.get("began"),
    })
"#;
