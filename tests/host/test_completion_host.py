"""Shell completion round trip: real bash, argcomplete's registered function, this
machine's /proc/kallsyms and tracefs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

BIN = os.path.dirname(sys.executable)
REGISTER = os.path.join(BIN, "register-python-argcomplete")

SCRIPT = r'''
eval "$("$REGISTER" kprobes)"
compl() {
  COMP_LINE="$1"; COMP_POINT=${#COMP_LINE}
  read -ra COMP_WORDS <<< "$COMP_LINE"
  [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
  _python_argcomplete kprobes "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  printf '%s\n' "${COMPREPLY[@]}"; echo "--"
}
compl "kprobes tr"
compl "kprobes trace --js"
compl "kprobes trace t:sched:sched_swi"
compl "kprobes list u:/bin/bas"
compl "kprobes info vfs_rea"
'''


def test_bash_round_trip(tracefs) -> None:
    if not (os.path.exists(REGISTER) and shutil.which("bash")):
        pytest.skip("argcomplete's register-python-argcomplete or bash missing")
    kp = os.path.join(BIN, "kprobes")
    if not os.path.exists(kp):
        pytest.skip("the kprobes entry point is not installed in this environment")
    env = dict(os.environ, REGISTER=REGISTER, PATH=f"{BIN}:{os.environ['PATH']}")
    r = subprocess.run(["bash", "-c", SCRIPT], capture_output=True, text=True, env=env,
                       timeout=60)
    answers = [a.split("\n") for a in r.stdout.split("--\n")[:-1]]
    assert len(answers) == 5, r.stdout + r.stderr
    sub, opt, tp, path, sym = answers
    assert sub == ["trace ", ""]          # one candidate: bash adds the space
    assert "--json " in opt[0]
    # bash splits words at ':' (COMP_WORDBREAKS): the reply is what follows the last one
    assert "sched_switch" in [t.strip() for t in tp]
    assert any(p.strip() in ("/bin/bash", "bin/bash") or p.endswith("bash") for p in path), path
    assert "vfs_read" in [s.strip() for s in sym]
