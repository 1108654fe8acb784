// Tier 2: run the firmware's tests on the real MicroPython interpreter (the official WebAssembly
// build from npm, @micropython/micropython-webassembly-pyscript, pinned in package.json).
//
//   node tests/mpy/run.mjs                  run every tests/mpy/test_*.py
//   node tests/mpy/run.mjs tests/mpy/test_x.py ...   run only those files
//   node tests/mpy/run.mjs --bench          run every tests/mpy/bench_*.py; their `BENCH <name>
//                                           <value> <unit>` lines are printed as one JSON array
//                                           on stdout (everything else goes to stderr), each
//                                           labelled with the interpreter that ran it
//                                           ("micropython-1.29.0 wasm")
//
// Each file gets a fresh interpreter (module state and heap do not leak between files) with
// firmware/, boards/ and tests/mpy/ copied into its in-memory filesystem under /app, and
// micropython-lib's aioble, cbor2 and hashlib-sha512 in /lib as on the device: the .py files
// pinned in tools/backhug_host/mplib.json, which `python -m backhug_host.mplib tree py`
// materialises (hash-checked, from the offline mip index in ../shared) before the first file
// runs. Test files run through tests/mpy/mpytest.py, which ends with `N passed, N failed`. The
// exit status is non-zero on any failed test, any script error, or a file that printed no
// summary.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { loadMicroPython } from "@micropython/micropython-webassembly-pyscript";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "..", "..");
const APP = "/app"; // the bundle root inside the interpreter, as on the device
const LIB = "/lib"; // where the device has micropython-lib's packages (on the default sys.path)
const MPLIB_JSON = path.join(ROOT, "tools", "backhug_host", "mplib.json");
const TESTS = APP + "/tests_mpy";
const SUMMARY = /^(\d+) passed, (\d+) failed$/;
const BENCH = /^BENCH (\S+) (-?[0-9.eE+-]+) (\S+)$/;

function pyFiles(dir) {
  // Every .py below dir, relative to dir, sorted (deterministic copy order).
  const out = [];
  const walk = (rel) => {
    for (const ent of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = rel ? rel + "/" + ent.name : ent.name;
      if (ent.isDirectory() && ent.name !== "__pycache__") walk(r);
      else if (ent.isFile() && ent.name.endsWith(".py")) out.push(r);
    }
  };
  if (fs.existsSync(dir)) walk("");
  return out.sort();
}

let pinnedLibs = null; // [[path in the package layout, bytes]], read once

function loadPinnedLibs() {
  // mplib needs only Python's standard library: the venv's python if there is one, else python3
  // with tools/ on the path (a fresh clone before `make venv`).
  const venvPython = path.join(ROOT, ".venv", "bin", "python");
  const python = fs.existsSync(venvPython) ? venvPython : "python3";
  const env = { ...process.env };
  env.PYTHONPATH = [path.join(ROOT, "tools"), env.PYTHONPATH].filter(Boolean).join(path.delimiter);
  const r = spawnSync(python, ["-m", "backhug_host.mplib", "tree", "py"], {
    cwd: ROOT,
    env,
    encoding: "utf8",
  });
  const dir = r.status === 0 ? r.stdout.trim().split("\n").pop() : "";
  if (!dir || !fs.existsSync(dir)) {
    const why = (r.stderr || r.stdout || String(r.error || "")).trim();
    throw new Error(`cannot materialise the pinned micropython-lib files (${python} -m ` +
      `backhug_host.mplib tree py): ${why}`);
  }
  return pyFiles(dir).map((rel) => [rel, fs.readFileSync(path.join(dir, rel))]);
}

const NATIVE_DECORATOR = /^[ \t]*@micropython\.(native|viper)[ \t]*$/gm;

function hasNativeEmitter(mp) {
  mp.runPython(
    "try:\n    exec('@micropython.native\\ndef _f():\\n    pass\\n')\n    _bh_native = True\n" +
      "except SyntaxError:\n    _bh_native = False\n",
  );
  return Boolean(mp.globals.get("_bh_native"));
}

async function newInterpreter(onLine) {
  const mp = await loadMicroPython({ stdout: onLine, stderr: onLine, linebuffer: true });
  if (pinnedLibs === null) pinnedLibs = loadPinnedLibs();
  for (const [rel, data] of pinnedLibs) {
    const dest = LIB + "/" + rel;
    mp.FS.mkdirTree(path.posix.dirname(dest));
    mp.FS.writeFile(dest, data);
  }
  // This port has no native emitter: `@micropython.native` is a compile error here, so those
  // decorator lines become blank lines (line numbers kept) and the functions run as bytecode,
  // the fallback firmware/runtime.py describes.
  const native = hasNativeEmitter(mp);
  const copyTree = (hostDir, mpDir) => {
    for (const rel of pyFiles(hostDir)) {
      const dest = mpDir + "/" + rel;
      mp.FS.mkdirTree(path.posix.dirname(dest));
      let data = fs.readFileSync(path.join(hostDir, rel));
      if (!native) data = data.toString("utf8").replace(NATIVE_DECORATOR, "");
      mp.FS.writeFile(dest, data);
    }
  };
  // the pins themselves, so that tests can check what /lib holds against them
  mp.FS.mkdirTree(APP);
  mp.FS.writeFile(APP + "/mplib.json", fs.readFileSync(MPLIB_JSON));
  copyTree(path.join(ROOT, "firmware"), APP + "/firmware");
  copyTree(path.join(ROOT, "boards"), APP + "/boards");
  mp.FS.mkdirTree(TESTS);
  for (const name of fs.readdirSync(HERE).filter((n) => n.endsWith(".py"))) {
    mp.FS.writeFile(TESTS + "/" + name, fs.readFileSync(path.join(HERE, name)));
  }
  mp.runPython(`import sys\nsys.path[:0] = ["${TESTS}", "${APP}"]`);
  return mp;
}

function moduleName(file) {
  return path.basename(file, ".py");
}

let current = null; // the file being run, for the message below

// A coroutine awaiting something that never happens leaves Node's event loop empty: Node then
// exits (code 13) without finishing the top-level await. Say which file did it.
process.on("exit", () => {
  if (current !== null) {
    console.log(`${current}: never finished (a coroutine awaited an event that was never set)`);
    process.exitCode = 1;
  }
});

async function runTestFile(file) {
  const lines = [];
  current = path.relative(ROOT, file);
  let scriptError = null;
  try {
    const mp = await newInterpreter((line) => lines.push(line));
    await mp.runPythonAsync(`import mpytest\nawait mpytest.main("${moduleName(file)}")`);
  } catch (err) {
    scriptError = err.message || String(err);
  }
  current = null;
  const summary = lines.length ? SUMMARY.exec(lines[lines.length - 1]) : null;
  const passed = summary ? Number(summary[1]) : 0;
  let failed = summary ? Number(summary[2]) : 0;
  if (scriptError || !summary) failed += 1;
  const rel = path.relative(ROOT, file);
  console.log(`${rel}: ${passed} passed, ${failed} failed`);
  const body = summary ? lines.slice(0, -1) : lines;
  if (failed) {
    for (const line of body) console.log("  " + line);
    if (scriptError) console.log("  script error: " + scriptError.trimEnd().replace(/\n/g, "\n  "));
    else if (!summary) console.log("  no summary line: the file did not run to the end");
  }
  return { passed, failed };
}

function interpreterLabel(mp) {
  // what ran a benchmark: "micropython-1.29.0 wasm"
  mp.runPython(
    'import sys\n_bh_interp = "micropython-%d.%d.%d" % sys.implementation.version[:3]',
  );
  return `${mp.globals.get("_bh_interp")} wasm`;
}

async function runBenchFile(file) {
  const results = [];
  let ok = true;
  let interpreter = "micropython wasm";
  current = path.relative(ROOT, file);
  const onLine = (line) => {
    const m = BENCH.exec(line);
    if (m) {
      const source = path.basename(file);
      results.push({ name: m[1], value: Number(m[2]), unit: m[3], source, interpreter });
    } else process.stderr.write(line + "\n");
  };
  try {
    const mp = await newInterpreter(onLine);
    interpreter = interpreterLabel(mp);
    await mp.runPythonAsync(`import ${moduleName(file)}`);
  } catch (err) {
    ok = false;
    process.stderr.write(`${path.relative(ROOT, file)}: script error: ${err.message || err}\n`);
  }
  current = null;
  return { results, ok };
}

async function main(argv) {
  const bench = argv.includes("--bench");
  const explicit = argv.filter((a) => !a.startsWith("--")).map((a) => path.resolve(a));
  const prefix = bench ? "bench_" : "test_";
  const files = explicit.length
    ? explicit
    : fs
        .readdirSync(HERE)
        .filter((n) => n.startsWith(prefix) && n.endsWith(".py"))
        .sort()
        .map((n) => path.join(HERE, n));

  if (bench) {
    const all = [];
    let ok = true;
    for (const file of files) {
      const r = await runBenchFile(file);
      all.push(...r.results);
      ok = ok && r.ok;
    }
    process.stdout.write(JSON.stringify(all, null, 1) + "\n");
    return ok ? 0 : 1;
  }

  let passed = 0;
  let failed = 0;
  for (const file of files) {
    const r = await runTestFile(file);
    passed += r.passed;
    failed += r.failed;
  }
  if (!files.length) {
    console.log("no tests/mpy/test_*.py files found");
    failed += 1;
  }
  console.log(`tier 2 (MicroPython 1.29 WebAssembly): ${passed} passed, ${failed} failed`);
  return failed ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
