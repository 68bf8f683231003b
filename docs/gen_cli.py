"""Generate docs/cli.md: every command of the command line, with the output of real runs.

    python docs/gen_cli.py     # needs TensorFlow, Keras (and onnxruntime + tf2onnx for bench)

Runs each command in a scratch directory on the example Keras CNN (``tfdeploy example``'s
model, saved as cnn.keras) and on a tf.function with a loop, and writes what it printed.
Timings are this machine's at the time of the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TARGET = os.path.join(HERE, "cli.md")
IMAGES = os.path.join(HERE, "cli")
# this interpreter's tfdeploy and python first on PATH, this checkout's code
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.path.join(ROOT, "src"),
           COLUMNS="100",
           PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))

SETUP = r"""
import os, keras, numpy as np, tensorflow as tf
from tfdeploy.cli import example_model
keras.utils.set_random_seed(0)
example_model(keras).save("cnn.keras")
np.save("x.npy", np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32))
np.save("bad.npy", np.zeros((4, 32, 32, 3), np.float32))

class Loop(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32, name="x"),
                                  tf.TensorSpec([], tf.int32, name="steps")])
    def f(self, x, steps):
        def body(i, h):
            return i + 1, tf.tanh(tf.matmul(h, tf.eye(8) * 0.5) + 1.0)
        return {"h": tf.while_loop(lambda i, h: i < steps, body, [tf.constant(0), x])[1]}

m = Loop()
tf.saved_model.save(m, "loop_saved_model", signatures=m.f)
"""


def sh(cmd: str) -> str:
    """``$ cmd`` and what it printed (stdout, then stderr), as a console block."""
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=ENV)
    out = (r.stdout + r.stderr).rstrip()
    status = f"\n(exit status {r.returncode})" if r.returncode else ""
    return f"```console\n$ {cmd}\n{out}{status}\n```\n"


def section(title: str, text: str, *cmds: str) -> str:
    text = f"{text.strip()}\n\n" if text.strip() else ""
    return f"## {title}\n\n{text}" + "\n".join(sh(c) for c in cmds) + "\n"


def render(work: str) -> str:
    os.chdir(work)
    subprocess.run([sys.executable, "-c", SETUP], check=True, env=ENV, capture_output=True)
    parts = [HEADER, section("Commands", "", "tfdeploy --help")]
    parts.append(section("convert", CONVERT, "tfdeploy convert cnn.keras --verify",
                         "tfdeploy convert loop_saved_model loop.tfd", "tfdeploy convert --help"))
    parts.append(section("info", INFO, "tfdeploy info cnn.tfd", "tfdeploy info loop.tfd",
                         "tfdeploy info loop.tfd --json | head -30"))
    parts.append(section("run", RUN, "tfdeploy run cnn.tfd --input x.npy --output y.npz",
                         "tfdeploy run cnn.tfd",
                         "echo '{\"x\": [[1, 2, 3, 4, 5, 6, 7, 8]], \"steps\": 3}' > in.json "
                         "&& tfdeploy run loop.tfd --input in.json"))
    parts.append(section("check", CHECK, "tfdeploy check cnn.tfd",
                         "python -c \"import tfdeploy as td; td.load('cnn.tfd', verify=True); "
                         "print('verified')\"",
                         "tfdeploy convert loop_saved_model plain.tfd --no-check-data > "
                         "/dev/null && tfdeploy check plain.tfd"))
    parts.append(section("bench", BENCH, "tfdeploy bench cnn.tfd --batch 1,8,32 --threads 1 "
                         "--compare tf,onnxruntime",
                         "tfdeploy bench loop.tfd --batch 1,64 --threads 1 --compare "
                         "tf,onnxruntime --time 0.5"))
    parts.append(section("plan", PLAN, "tfdeploy plan cnn.tfd --batch 8"))
    parts.append(section("profile", PROFILE, "tfdeploy profile cnn.tfd --batch 8 -n 50 "
                         "--threads 1 --top 5"))
    os.makedirs(IMAGES, exist_ok=True)
    parts.append(section("graph", GRAPH, "tfdeploy graph cnn.tfd -o cnn.html",
                         "tfdeploy graph cnn.tfd -o cnn.svg --engine builtin",
                         "tfdeploy graph loop.tfd -o loop.svg --engine builtin",
                         "tfdeploy graph cnn.tfd -o cnn.dot && head -8 cnn.dot"))
    for name in ("cnn.svg", "loop.svg"):
        shutil.copy(name, os.path.join(IMAGES, name))
    parts.append(GRAPH_IMAGES)
    parts.append(section("example", EXAMPLE, "tfdeploy example --batch 8"))
    parts.append(section("Errors", ERRORS, "tfdeploy run cnn.tfd --input bad.npy",
                         "tfdeploy info missing.tfd", "tfdeploy bench cnn.tfd --batch 0",
                         "tfdeploy info missing.tfd --debug 2>&1 | tail -4"))
    return "".join(parts)


HEADER = """# The command line

`tfdeploy COMMAND ...` (or `python -m tfdeploy COMMAND ...`): convert a model, see what is in
it, run it, time it, draw it, and check it against TensorFlow. Only `convert` and `example`
need TensorFlow. Every command prints an error as one line on stderr and exits with status 2
(`--debug` shows the traceback); `--plugin MODULE` imports a module registering custom ops
first. The outputs below are real runs (`python docs/gen_cli.py` regenerates this page).

"""
CONVERT = """
Sources: a SavedModel directory, a `.keras` or `.h5` file (loaded with Keras 3, else
tf_keras), or a GraphDef `.pb` (`--inputs`/`--outputs` name its tensors; `--checkpoint` gives
the variables of an unfrozen one). By default the file also stores **check data**: a small
generated input and TensorFlow's outputs on it, with a tolerance (a few KB: an input larger
than 1 KB is stored as the recipe that regenerates it, an output of more than 64 values as a
fixed strided sample of 64 values plus statistics of all of them). Every converter path stores
it: Keras models, tf.functions, ConcreteFunctions, SavedModels, GraphDef files and TF1
`model.add(y, sess)` (`td.convert(..., check_data=False)` / `--no-check-data` to skip). When
TensorFlow cannot run the model on the generated input (nor on a cautious one: ints 0/1,
floats in [0, 1)), the model converts without check data and says why. The converter also
records TensorFlow's static shape of every tensor, for `graph`. `--verify` compares tfdeploy
with TensorFlow on the check input right away; a progress bar (tqdm) shows the stages on a
terminal.
"""
INFO = """
What a file holds, without running it (and without its custom ops registered): format
version, graphs, signature, parameter count and bytes, op histogram, functions (loop and
branch bodies) and their callers, custom ops and whether this process has them, check data.
`--json` prints the same for machines.
"""
RUN = """
Inputs: `.npy` (one input, or `NAME=file.npy`), `.npz` (by input name, or `arr_0`, `arr_1`...
in signature order), `.json` (a dict by input name; a list: the value of the only input, or one
value per input). Without `--input`, the check input stored in the file. `--output` saves
the outputs as `.npz`, `.npy` (one output) or `.json`.
"""
CHECK = """
Runs the check input stored in the file and compares with TensorFlow's outputs, per output:
largest absolute and relative difference (relative over the values above the absolute
tolerance), the tolerance (`atol + rtol * |value|`: 1e-4 of the output's scale for float32,
2e-2 for float16/bfloat16, exact for ints, bools and strings) and what was compared. Exit
status 2 when an output is beyond tolerance or the file has no check data.
`td.load(path, verify=True)` does the same when loading and raises `td.VerificationError`.
"""
BENCH = """
Latency percentiles of single calls and throughput per batch size, on generated inputs.
`--threads N` limits every engine to N threads: tfdeploy's own (`td.setup(threads=N)`), BLAS's
(threadpoolctl, or without it the BLAS library's own setter, as `td.setup(blas_threads=N)`;
OMP_NUM_THREADS and the like are set in the process's environment for the libraries a peer
loads later) and the peers' thread pools. `--compare tf,onnxruntime` times TensorFlow and
onnxruntime on the very graph in the file: the tfdeploy IR is turned back into a TensorFlow
GraphDef (`tfdeploy.convert.export`), run in a TF1 session, and converted by tf2onnx for
onnxruntime. A peer that is not installed or cannot take the graph is reported, with the
reason; each peer's largest difference to tfdeploy's outputs is printed. Below, tf2onnx cannot
convert Keras 3's gelu (`Erfc`).
"""
PLAN = """
The plan a call runs, one step a line: `%12 = Conv2D(%3, %c7) strides=... # node`, a fused
step with the nodes it replaces, each value's shape where it is known and when its buffer is
freed. `--batch N` specializes it for inputs of that batch size, as a call with such inputs
runs; `--after PASS` shows it as it stands after one of the compiler's passes; `--source`
prints the generated Python.
"""
PROFILE = """
Every kernel of the plan a call runs (loop bodies included) timed over `-n` runs: the time
per op type, a fused step under the ops it replaces, and the slowest nodes. Inputs:
`--batch N` (zeros, the first unknown dim of each input N) or `--input` files. `--threads N` sets
tfdeploy's threads (`td.setup(threads=N)`; default the CPUs the process may use); BLAS runs
one thread unless its environment variables say otherwise. For kernel timings without other
processes in the way, pin it: `taskset -c 0 tfdeploy profile ... --threads 1`. Each timed
step costs up to a microsecond more than in a plain call (its timer and wrapper): steps of a
few microseconds look costlier than they are, so judge a change to them end to end
(`tfdeploy bench`, or two processes timed in turn), not by their profile.
"""
GRAPH = """
`.html`: one self-contained page (inline script and style, works offline): drag to pan, wheel
to zoom, type in the search box (Enter: next match, `/` focuses it; `#search=TEXT` or
`#node=NAME` in the URL too), click a node for its op, output dtypes and shapes, inputs,
folded constants and attributes. `.svg`: Graphviz's `dot` when installed, else the built-in
layered layout (the one the html page shows). `.dot`: for Graphviz. Constants (and what is
computed from constants alone, such as a variable's read) are folded into the nodes that use
them; graphs of more than 150 boxes are grouped by name scope (a box per Keras layer, its
members in the details; `--group none` to see every node); loop and branch bodies are
clusters beside their callers, with a dashed arrow. Shapes are TensorFlow's static shapes
recorded at conversion (`?` where unknown); for files without them, those observed running
the check input.
"""
GRAPH_IMAGES = """The two pictures above, as the built-in layout draws them:

![the example CNN](cli/cnn.svg)
![a loop: the While node, its cond and body functions](cli/loop.svg)

"""
EXAMPLE = """
Builds the example CNN, converts it, and evaluates it in a fresh process where TensorFlow
cannot be imported.
"""
ERRORS = """
One line on stderr, exit status 2; `--debug` adds the traceback.
"""


def main() -> int:
    work = tempfile.mkdtemp(prefix="tfdeploy-cli-doc-")
    try:
        text = render(work)
    finally:
        os.chdir(ROOT)
        shutil.rmtree(work, ignore_errors=True)
    with open(TARGET, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
