#!/usr/bin/env python3
"""Tests of bisect.py's walk over a history with merged branches, on a git repository made here
(no Wan2GP, no tracing: the traces are answers the test gives).

    python3 tools/wan2gp_trace/test_bisect.py
"""
import importlib.util
import json
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("wgpm_bisect", os.path.join(HERE, "bisect.py"))
bisect = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bisect)


def knowledge(core, archs=("t2v",)):
    return {"variant_rule": "8681e9f7", "core": [{"path": p, "url": "https://h/" + p} for p in core],
            "architectures": {a: {"lora_dir": "loras/wan", "support": []} for a in archs}, "models": {}}


class Repo:
    """main: a - b - m(merges side) - c; side forks at a: s1 - s2; s2 merges into m."""

    def __init__(self, root):
        self.root = root
        os.makedirs(root)
        self.env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
                        GIT_COMMITTER_EMAIL="t@t", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_SYSTEM="/dev/null")
        self.git("init", "-q", "-b", "main")
        self.c = {}
        self.commit("a")
        self.git("checkout", "-q", "-b", "side")
        self.commit("s1")
        self.commit("s2")
        self.git("checkout", "-q", "main")
        self.commit("b")
        self.git("merge", "-q", "--no-ff", "-m", "m", "side")
        self.c["m"] = self.head()
        self.commit("c")

    def git(self, *args):
        return subprocess.run(["git", "-C", self.root] + list(args), env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def head(self):
        return self.git("rev-parse", "HEAD").strip()

    def commit(self, name):
        with open(os.path.join(self.root, name), "w") as f:
            f.write(name)
        self.git("add", name)
        self.git("commit", "-q", "-m", name)
        self.c[name] = self.head()

    def rows(self, order):
        return [{"commit": self.c[n], "date": "2026-01-01", "wangp_version": "1", "fingerprint": "fp-" + n,
                 "definitions": ""} for n in order]


class FakeBisect(bisect.Bisect):
    """Traces by looking the answer up; records what it was asked."""

    def __init__(self, a, answers):
        super().__init__(a)
        self.answers, self.asked = answers, []

    def trace(self, row):
        c8 = row["commit"][:8]
        if c8 in self.knowledge:
            return self.knowledge[c8]
        self.asked.append(c8)
        self.traces += 1
        k = self.answers.get(c8)
        if k is not None:
            self.knowledge[c8] = k
        return k


class Args:
    def __init__(self, git_dir, known, work):
        self.git_dir, self.known, self.work = git_dir, known, work
        self.budget, self.deadline = 100, None


class WalkTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.repo = Repo(os.path.join(self.tmp.name, "repo"))
        os.makedirs(os.path.join(self.tmp.name, "known"))
        os.makedirs(os.path.join(self.tmp.name, "work"))
        self.args = Args(os.path.join(self.repo.root, ".git"), os.path.join(self.tmp.name, "known"),
                         os.path.join(self.tmp.name, "work"))
        # commits.json's order: by date, so the side branch interleaves with main.
        self.rows = self.repo.rows(["a", "s1", "b", "s2", "m", "c"])

    def tearDown(self):
        self.tmp.cleanup()

    def test_every_commit_is_inside_exactly_one_line_and_ends_are_on_earlier_lines(self):
        b = FakeBisect(self.args, {})
        lines = b.lines(self.rows)
        c = self.repo.c
        self.assertEqual([r["commit"] for r in lines[0]], [c["a"], c["b"], c["m"], c["c"]])
        self.assertEqual([r["commit"] for r in lines[1]], [c["a"], c["s1"], c["s2"], c["m"]],
                         "the side branch framed by its fork point and its merge")
        inside = [r["commit"] for r in lines[0]] + [r["commit"] for r in lines[1][1:-1]]
        self.assertEqual(sorted(inside), sorted(c.values()))

    def test_a_side_branch_between_agreeing_ends_takes_their_knowledge_without_tracing(self):
        c8 = {n: h[:8] for n, h in self.repo.c.items()}
        same = knowledge(["ckpts/x.bin"])
        b = FakeBisect(self.args, {c8["a"]: same, c8["c"]: same})
        placed = b.run(self.rows, {})
        self.assertEqual(sorted(b.asked), sorted([c8["a"], c8["c"]]), "only the first line's ends are traced")
        for n in ("s1", "s2", "b", "m"):
            self.assertIn("fp-" + n, placed)

    def test_a_side_branch_whose_ends_differ_is_bisected_on_its_own_line(self):
        c8 = {n: h[:8] for n, h in self.repo.c.items()}
        old, new = knowledge(["ckpts/old.bin"]), knowledge(["ckpts/new.bin"])
        # The change happened on the side branch, at s2; main's b still has the old code.
        answers = {c8["a"]: old, c8["b"]: old, c8["m"]: new, c8["c"]: new, c8["s1"]: old, c8["s2"]: new}
        b = FakeBisect(self.args, answers)
        placed = b.run(self.rows, {})
        self.assertIn(c8["s1"], b.asked)
        self.assertIn(c8["s2"], b.asked)
        self.assertEqual(b.knowledge[placed["fp-s1"]]["core"], old["core"])
        self.assertEqual(b.knowledge[placed["fp-s2"]]["core"], new["core"])

    def test_a_commit_that_cannot_be_traced_is_left_unplaced(self):
        c8 = {n: h[:8] for n, h in self.repo.c.items()}
        old, new = knowledge(["ckpts/old.bin"]), knowledge(["ckpts/new.bin"])
        b = FakeBisect(self.args, {c8["a"]: old, c8["c"]: new, c8["m"]: new, c8["s2"]: new})
        placed = b.run(self.rows, {})
        self.assertNotIn("fp-b", placed, "b failed to trace and lies between different knowledge")
        self.assertNotIn("fp-s1", placed)

    def test_bundled_placements_seed_the_anchors(self):
        c8 = {n: h[:8] for n, h in self.repo.c.items()}
        same = knowledge(["ckpts/x.bin"])
        with open(os.path.join(self.args.known, c8["a"] + ".json"), "w") as f:
            json.dump(same, f)
        b = FakeBisect(self.args, {})
        placed = b.run(self.rows, {"fp-a": c8["a"], "fp-c": c8["a"]})
        self.assertEqual(b.asked, [], "nothing traced: both ends of every line are known")
        self.assertEqual(placed["fp-s1"], c8["a"])


if __name__ == "__main__":
    unittest.main()
