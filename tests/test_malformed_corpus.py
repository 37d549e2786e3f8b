import json
import subprocess
import sys

from buxiban.data.records import read_chat_jsonl

import malformed_corpus


def test_every_bad_line_is_reported_and_valid_lines_survive_in_order(tmp_path):
    path = tmp_path / "corpus.jsonl"
    bad, valid = malformed_corpus.build(path)
    assert len(bad) >= 1000
    conversations, problems = read_chat_jsonl(path)
    assert [c.line for c in conversations] == valid
    by_line: dict[int, list[str]] = {}
    for problem in problems:
        by_line.setdefault(int(problem.where.rsplit(":", 1)[1]), []).append(str(problem))
    for line, fragment in bad:
        assert line in by_line, f"line {line} not reported"
        assert any(fragment in text for text in by_line[line]), (line, fragment, by_line[line])
    assert set(by_line) == {line for line, _ in bad}, "a valid line was reported"


def test_checking_the_corpus_stays_under_1_gb(tmp_path):
    """In a fresh process: the whole check, 50 MB line included, peaks under 1 GB resident."""
    path = tmp_path / "corpus.jsonl"
    bad, _ = malformed_corpus.build(path)
    script = (
        "import json, resource, sys\n"
        "from buxiban.data.check import check_file\n"
        f"report = check_file({str(path)!r})\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forked parent (pytest, large
        # after the model tests), while VmHWM belongs to this program's own memory since exec
        "status = open('/proc/self/status').read()\n"
        "peak_kib = int(status.split('VmHWM:')[1].split()[0]) if 'VmHWM:' in status else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(json.dumps({'problems': len(report.problems), 'peak_mib': peak_kib / 1024}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["problems"] >= len(bad)
    assert result["peak_mib"] < 1024, result
