"""A copy of the project's tracked files in a temporary folder, and the command line run inside it:
the end-to-end tests execute and re-render there, so they never write into the checkout's own
runs/, records/, reports/ or figures/ (the package in the copy is the one that runs: `python -m`
from its root, and the notebooks' kernels get it first on their path)."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name]


def copy_project(to: Path) -> list[str]:
    """Copy every tracked file that exists in the working tree to `to`; returns their names."""
    files = [name for name in tracked_files() if (ROOT / name).is_file()]
    for name in files:
        (to / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, to / name)
    return files


def run_cli(root: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    """`python -m distill_lib ARGS` in the copy at `root`; its output is kept for the assertion message."""
    done = subprocess.run([sys.executable, "-m", "distill_lib", *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"distill_lib {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done
