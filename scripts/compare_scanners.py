#!/usr/bin/env python3
"""Compare leash-scan with detect-secrets and secretlint: quality on the
labeled corpus, throughput on a large sample of real text files.

Called by scripts/compare-scanners, which installs the tools and builds
leash-scan; run that instead. No secret is printed: tools' raw reports go
to files under the output directory, and only counts and rates are shown.

    compare_scanners.py quality    --out DIR --corpus DIR --leash-bin DIR --detect-secrets EXE --secretlint DIR
    compare_scanners.py throughput --out DIR --leash-bin DIR --detect-secrets EXE --secretlint DIR
                                   [--sample-mb 200] [--subset-mb 10] [--runs 3] [--core 1] ROOT...
"""
import argparse
import collections
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import time

SNIFF = 8 * 1024  # leash-scan's BINARY_SNIFF_LEN: a NUL in here means binary
MAX_FILE = 1 << 20  # files larger than 1 MiB are left out of the sample
BATCH = 1000  # files per detect-secrets / secretlint invocation


# --- running the tools --------------------------------------------------------

def timed(cmd, cwd=None, stdout=subprocess.DEVNULL):
    """Run cmd; (wall seconds, CPU seconds of it and its children, exit code)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=stdout, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def pinned(core, cmd):
    return ["taskset", "-c", str(core)] + cmd if core is not None else cmd


def secretlint_cmd(sl_dir, files, output):
    return [os.path.join(sl_dir, "node_modules", ".bin", "secretlint"),
            "--secretlintrc", os.path.join(sl_dir, ".secretlintrc.json"),
            "--no-glob", "--no-gitignore", "--format", "json", "--output", output] + files


def detect_secrets_cmd(exe, files):
    # -c 1: one worker process (detect-secrets otherwise forks one per core).
    return [exe, "-c", "1", "scan", "--all-files"] + files


def batches(items, size=BATCH):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def versions(args):
    leash = "leash-scan " + subprocess.run(
        ["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    ds = subprocess.run([args.detect_secrets, "--version"], capture_output=True, text=True).stdout.strip()
    sl = subprocess.run([os.path.join(args.secretlint, "node_modules", ".bin", "secretlint"), "--version"],
                        capture_output=True, text=True).stdout.strip()
    with open(os.path.join(args.secretlint, "node_modules", "@secretlint",
                           "secretlint-rule-preset-recommend", "package.json")) as f:
        preset = json.load(f)["version"]
    return {"leash": leash, "detect-secrets": ds, "secretlint": f"{sl} (preset-recommend {preset})"}


# --- quality ------------------------------------------------------------------

def corpus_files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if rel not in ("labels.json", "generate.py"):
                out.append(rel)
    return sorted(out)


def leash_findings(args, files, out):
    """[(file, first line, last line, rule)] from the scan_json example."""
    listing = os.path.join(out, "corpus-files.txt")
    with open(listing, "w") as f:
        f.write("\n".join(files) + "\n")
    report = os.path.join(out, "leash.jsonl")
    with open(report, "w") as f:
        subprocess.run([os.path.join(args.leash_bin, "scan_json"), "--root=" + args.corpus,
                        "--files=" + listing, "--leash-jwt-kid=leash-test-kid"],
                       stdout=f, stderr=subprocess.DEVNULL, check=True)
    with open(report) as f:
        return [(j["file"], j["line"], j["line"], j["rule"]) for j in map(json.loads, f)]


def detect_secrets_findings(args, files, out):
    report = os.path.join(out, "detect-secrets.json")
    with open(report, "w") as f:
        subprocess.run(detect_secrets_cmd(args.detect_secrets, files), cwd=args.corpus, stdout=f, check=True)
    with open(report) as f:
        results = json.load(f)["results"]
    return [(file, s["line_number"], s["line_number"], s["type"]) for file, found in results.items() for s in found]


def secretlint_findings(args, files, out):
    report = os.path.join(out, "secretlint.json")
    # Exit code 1 means "found something".
    subprocess.run(secretlint_cmd(args.secretlint, files, report), cwd=args.corpus,
                   stdout=subprocess.DEVNULL, check=False)
    with open(report) as f:
        results = json.load(f)
    return [(os.path.relpath(r["filePath"], args.corpus), m["loc"]["start"]["line"], m["loc"]["end"]["line"], m["ruleId"])
            for r in results for m in r["messages"]]


def score_lines(findings, labeled):
    """File+line matching. A finding is its file and the lines it spans (one
    line, except secretlint's multi-line matches); it is a true positive when
    a labeled (file, line) falls in that span. Findings on the same span are
    counted once."""
    spans = sorted({(f, a, b) for f, a, b, _ in findings})
    hit = set()
    tp_spans = 0
    for file, first, last in spans:
        inside = {(file, line) for line in range(first, last + 1)} & labeled
        if inside:
            tp_spans += 1
            hit |= inside
    fp = len(spans) - tp_spans
    fn = len(labeled - hit)
    return {"findings": len(spans), "tp": tp_spans, "fp": fp, "fn": fn,
            "precision": tp_spans / max(len(spans), 1), "recall": len(hit) / max(len(labeled), 1)}


def score_strict(findings, labels):
    expected = {(l["file"], l["line"], l["rule"]) for l in labels}
    found = {(f, a, rule) for f, a, _, rule in findings}
    tp = len(found & expected)
    return {"findings": len(found), "tp": tp, "fp": len(found - expected), "fn": len(expected - found),
            "precision": tp / max(len(found), 1), "recall": tp / max(len(expected), 1)}


def quality(args):
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.corpus, "labels.json")) as f:
        labels = json.load(f)
    labeled = {(l["file"], l["line"]) for l in labels}
    files = corpus_files(args.corpus)
    size = sum(os.path.getsize(os.path.join(args.corpus, f)) for f in files)
    ver = versions(args)
    leash = leash_findings(args, files, args.out)
    rows = [("leash (file+line+rule, strict)", ver["leash"], score_strict(leash, labels)),
            ("leash", ver["leash"], score_lines(leash, labeled)),
            ("detect-secrets", ver["detect-secrets"], score_lines(detect_secrets_findings(args, files, args.out), labeled)),
            ("secretlint", ver["secretlint"], score_lines(secretlint_findings(args, files, args.out), labeled))]
    print(f"Corpus: {len(files)} files, {size} bytes, {len(labels)} labeled secrets on {len(labeled)} lines.")
    print("Matching: a finding is a true positive when it is on a labeled (file, line) (a multi-line")
    print("finding, when the span holds one); rule names are not compared, since each tool names rules")
    print("its own way, except on the first row. Findings on the same (file, line) count once.\n")
    print("| tool | version | findings | TP | FP | FN | precision | recall |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, version, s in rows:
        print(f"| {name} | {version} | {s['findings']} | {s['tp']} | {s['fp']} | {s['fn']} "
              f"| {s['precision']:.3f} | {s['recall']:.3f} |")
    with open(os.path.join(args.out, "quality.json"), "w") as f:
        json.dump([{"tool": n, "version": v, **s} for n, v, s in rows], f, indent=1)


# --- corpus summary ---------------------------------------------------------------

# Decoy categories, recognised on lines that hold no labeled secret. A count is
# of matches, so a line can count in several categories.
DECOYS = {
    "placeholder": r"<[^<>\n]*(?:key|token|secret|password|here|set-me|paste|generate|redacted)[^<>\n]*>|x{8,}|X{8,}|\*{5,}|\$\{\{?\s*[A-Za-z_.]+\s*\}?\}|\[(?:MASKED|REDACTED|redacted)\]"
                   r"|your[_-][a-z_]*|changeme|sk-\.\.\.|sk-ant-api03-\.\.\.|<redacted>|=\.\.\.|\*\*\* masked",
    "documented example": r"AKIAIOSFODNN7EXAMPLE|wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY|sk_test_4eC39HqLyjWDarjtT1zdp7dc"
                          r"|SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c|Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErC"
                          r"|ghp_16C7e42F292c6912E7710c838347Ae178B4a|xoxb-17653672481-19874698323|AAAAIOMqqnkVzrm0SdG6UOoqKLsab",
    "hash": r"(?<![A-Za-z0-9])(?:[0-9a-f]{64}|[0-9a-f]{40}|[0-9a-f]{32})(?![A-Za-z0-9])|\$2b\$12\$|sha(?:256|512)-[A-Za-z0-9+/]{40,}",
    "UUID": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "base64 blob": r"(?<![A-Za-z0-9+/])(?=[A-Za-z0-9+/]*[0-9])(?=[A-Za-z0-9+/]*[+/])[A-Za-z0-9+/]{60,}={0,2}",
    "checksum-invalid token": r"\b(?:gh[pousr]|npm|lsh)_[A-Za-z0-9]{36,38}\b",
    "public key or certificate": r"ssh-(?:rsa|ed25519) AAAA|ecdsa-sha2-nistp256 AAAA|BEGIN (?:CERTIFICATE|PUBLIC KEY)"
                                 r"|\"n\":\s*\"|\bn=[A-Za-z0-9_-]{100,}|MFkwEwYHKoZIzj0CAQY|pk_live_|pk\.eyJ|ca\.crt: [A-Za-z0-9+/]{40}",
}


def corpus_summary(args):
    with open(os.path.join(args.corpus, "labels.json")) as f:
        labels = json.load(f)
    labeled = {(l["file"], l["line"]) for l in labels}
    files = corpus_files(args.corpus)
    kinds = sorted({f.split("/")[0] for f in files})
    by_kind = collections.Counter(f.split("/")[0] for f in files)
    secrets = collections.Counter(l["file"].split("/")[0] for l in labels)
    decoys = {c: collections.Counter() for c in DECOYS}
    patterns = {c: re.compile(p) for c, p in DECOYS.items()}
    for file in files:
        kind = file.split("/")[0]
        with open(os.path.join(args.corpus, file), encoding="utf-8", errors="replace") as f:
            armored = False  # inside a PEM/PGP block: its body is counted with its header
            for number, line in enumerate(f, 1):
                body = armored
                armored = (armored or "-----BEGIN" in line) and "-----END" not in line
                if (file, number) in labeled or (body and "-----END" not in line):
                    continue
                for category, pattern in patterns.items():
                    decoys[category][kind] += len(pattern.findall(line))
    # The checksum-invalid tokens also match as hashes or blobs nowhere; the
    # documented GitHub example is checksum-invalid too, and counted once, there.
    print("| | " + " | ".join(kinds) + " | total |")
    print("|---|" + "---:|" * (len(kinds) + 1))
    print("| files | " + " | ".join(str(by_kind[k]) for k in kinds) + f" | {len(files)} |")
    print("| labeled secrets | " + " | ".join(str(secrets[k]) for k in kinds) + f" | {len(labels)} |")
    for category, counts in decoys.items():
        print(f"| decoy: {category} | " + " | ".join(str(counts[k]) for k in kinds)
              + f" | {sum(counts.values())} |")
    print("\nDecoys are counted by pattern on lines without a labeled secret (a rough census, not labels).")


# --- throughput -----------------------------------------------------------------

def is_text(path):
    with open(path, "rb") as f:
        return b"\0" not in f.read(SNIFF)


def sample(roots, megabytes):
    """Per root, its text files (no NUL in the first 8 KiB, 1 byte to 1 MiB,
    no symlinks) ordered by the SHA-256 of their path below the root, taken
    in that order up to an equal share of `megabytes`. Deterministic for a
    given tree, and spread over the whole tree rather than its first
    directories."""
    share = megabytes * 1_000_000 // len(roots)
    picked = {}
    for root in roots:
        candidates = []
        for dirpath, dirnames, names in os.walk(root):
            dirnames.sort()
            for name in names:
                path = os.path.join(dirpath, name)
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                size = os.path.getsize(path)
                if 0 < size <= MAX_FILE:
                    rel = os.path.relpath(path, root)
                    candidates.append((hashlib.sha256(rel.encode()).hexdigest(), rel, size))
        candidates.sort()
        total, chosen = 0, []
        for _, rel, size in candidates:
            if total >= share:
                break
            if is_text(os.path.join(root, rel)):
                chosen.append((rel, size))
                total += size
        picked[root] = chosen
    return picked


def prefix(picked, megabytes):
    share = megabytes * 1_000_000 // len(picked)
    out = {}
    for root, files in picked.items():
        total, chosen = 0, []
        for rel, size in files:
            if total >= share:
                break
            chosen.append((rel, size))
            total += size
        out[root] = chosen
    return out


def flat(picked):
    return [os.path.join(root, rel) for root, files in picked.items() for rel, _ in files]


def size_of(picked):
    return sum(size for files in picked.values() for _, size in files)


def run_leash_e2e(args, listing):
    return timed(pinned(args.core, [os.path.join(args.leash_bin, "scan_json"), "--files=" + listing]))


def run_detect_secrets(args, picked):
    wall = cpu = 0.0
    for root, files in picked.items():
        for batch in batches([rel for rel, _ in files]):
            w, c, _ = timed(pinned(args.core, detect_secrets_cmd(args.detect_secrets, batch)), cwd=root)
            wall, cpu = wall + w, cpu + c
    return wall, cpu, 0


def run_secretlint(args, picked):
    wall = cpu = 0.0
    report = os.path.join(args.out, "secretlint-throughput.json")
    for batch in batches(flat(picked)):
        w, c, _ = timed(pinned(args.core, secretlint_cmd(args.secretlint, batch, report)))
        wall, cpu = wall + w, cpu + c
    return wall, cpu, 0


def rate(mb, seconds):
    r = mb / seconds if seconds > 0 else float("inf")
    return f"{r:.2f}" if r < 10 else f"{r:.0f}"


def median_of(runs, fn):
    results = [fn() for _ in range(runs)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results)


def throughput(args):
    os.makedirs(args.out, exist_ok=True)
    roots = [os.path.realpath(r) for r in args.roots if os.path.isdir(r)]
    if not roots:
        sys.exit("no sample root exists")
    picked = sample(roots, args.sample_mb)
    subset = prefix(picked, args.subset_mb)
    full_list = os.path.join(args.out, "sample.txt")
    subset_list = os.path.join(args.out, "subset.txt")
    for path, p in ((full_list, picked), (subset_list, subset)):
        with open(path, "w") as f:
            f.write("\n".join(flat(p)) + "\n")
    full_mb, subset_mb = size_of(picked) / 1e6, size_of(subset) / 1e6
    nfull, nsub = len(flat(picked)), len(flat(subset))
    ver = versions(args)
    print(f"Sample: {nfull} text files, {full_mb:.1f} MB from {', '.join(roots)}")
    print(f"  (listed in {full_list}; per root, files ordered by SHA-256 of their path, up to an equal share).")
    print(f"Subset for the slower tools: the first {nsub} files of each root's share, {subset_mb:.1f} MB ({subset_list}).")
    print(f"Each tool pinned to core {args.core} (taskset), single process, files in the page cache;")
    print(f"median of {args.runs} runs. MB/s by wall clock, and by CPU time (user + system of the")
    print("process and its children), which other load on this shared machine does not inflate.\n")

    # Warm the page cache, so no tool pays for the disk.
    for path in flat(picked):
        with open(path, "rb") as f:
            f.read()

    # Start-up: each tool on one small file (included in the end-to-end times below).
    tiny = os.path.join(args.out, "tiny.txt")
    with open(tiny, "w") as f:
        f.write("nothing to see here\n")
    tiny_dir = {os.path.dirname(tiny): [(os.path.basename(tiny), 20)]}
    tiny_list = os.path.join(args.out, "tiny-list.txt")
    with open(tiny_list, "w") as f:
        f.write(tiny + "\n")
    startup = {
        "leash": median_of(args.runs, lambda: run_leash_e2e(args, tiny_list)),
        "detect-secrets": median_of(args.runs, lambda: run_detect_secrets(args, tiny_dir)),
        "secretlint": median_of(args.runs, lambda: run_secretlint(args, tiny_dir)),
    }

    rows = []
    # Leash engine alone: files read into memory first, then only Scanner::scan_report is timed.
    out = subprocess.run(pinned(args.core, [os.path.join(args.leash_bin, "throughput"), "--files=" + full_list,
                                            f"--runs={args.runs}"]), capture_output=True, text=True, check=True).stdout
    engine = [l for l in out.splitlines() if l.startswith("scanned")][0]
    wall_rate = float(engine.split("median ")[1].split(" MB/s")[0])
    cpu_rate = float(engine.split(", ")[-1].split(" MB/s")[0]) if "by CPU time" in engine else wall_rate
    rows.append(("leash engine (scan only)", ver["leash"], nfull, full_mb, full_mb / wall_rate, full_mb / cpu_rate, None))
    w, c = median_of(args.runs, lambda: run_leash_e2e(args, full_list))
    rows.append(("leash scan_json (end to end)", ver["leash"], nfull, full_mb, w, c, startup["leash"][1]))
    w, c = median_of(args.runs, lambda: run_leash_e2e(args, subset_list))
    leash_subset = (w, c)
    rows.append(("leash scan_json (end to end)", ver["leash"], nsub, subset_mb, w, c, startup["leash"][1]))
    w, c = median_of(args.runs, lambda: run_detect_secrets(args, subset))
    rows.append(("detect-secrets scan -c 1", ver["detect-secrets"], nsub, subset_mb, w, c, startup["detect-secrets"][1]))
    w, c = median_of(args.runs, lambda: run_secretlint(args, subset))
    rows.append(("secretlint", ver["secretlint"], nsub, subset_mb, w, c, startup["secretlint"][1]))

    print("| tool | version | files | MB | wall s | MB/s (wall) | CPU s | MB/s (CPU) | start-up CPU s "
          "| leash ÷ tool (CPU) | leash ÷ tool (wall) |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, version, n, mb, wall, cpu, start in rows:
        ratio_cpu = ratio_wall = ""
        if not name.startswith("leash"):
            ratio_cpu = f"{(subset_mb / leash_subset[1]) / (mb / cpu):.0f}×"
            ratio_wall = f"{(subset_mb / leash_subset[0]) / (mb / wall):.0f}×"
        start_text = "" if start is None else f"{start:.2f}"
        print(f"| {name} | {version} | {n} | {mb:.1f} | {wall:.2f} | {rate(mb, wall)} | {cpu:.2f} | {rate(mb, cpu)} "
              f"| {start_text} | {ratio_cpu} | {ratio_wall} |")
    print("\nRatios: leash scan_json end to end (start-up, reading, scanning, printing) against each tool")
    print("on the same subset of files. detect-secrets and secretlint get at most "
          f"{BATCH} files per invocation, so their")
    print("times include one start-up per batch. The engine row times Scanner::scan_report alone, over")
    print("files already in memory (the examples/throughput binary).")


def main():
    # Line-buffered, so nothing printed is left in a buffer when a tool starts.
    sys.stdout.reconfigure(line_buffering=True)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("corpus").add_argument("--corpus", required=True)
    for name in ("quality", "throughput"):
        p = sub.add_parser(name)
        p.add_argument("--out", required=True)
        p.add_argument("--leash-bin", required=True, help="directory holding the scan_json and throughput examples")
        p.add_argument("--detect-secrets", required=True, help="the detect-secrets executable")
        p.add_argument("--secretlint", required=True, help="directory with node_modules and .secretlintrc.json")
    sub.choices["quality"].add_argument("--corpus", required=True)
    t = sub.choices["throughput"]
    t.add_argument("--sample-mb", type=int, default=200)
    t.add_argument("--subset-mb", type=int, default=10)
    t.add_argument("--runs", type=int, default=3)
    t.add_argument("--core", type=int, default=1)
    t.add_argument("roots", nargs="+")
    args = parser.parse_args()
    {"quality": quality, "throughput": throughput, "corpus": corpus_summary}[args.command](args)


if __name__ == "__main__":
    main()
