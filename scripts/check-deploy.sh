#!/usr/bin/env bash
# Checks the deploy artifacts with the tools operators use on them, and against the binaries:
#
#   cfn-lint     every CloudFormation template in deploy/cloudformation/ with `cfn-lint
#                --include-checks I` (informational findings included; a check may only be
#                ignored through `Metadata: cfn-lint: config: ignore_checks:` with a comment
#                saying why, which this script insists on).
#   systemd      `systemd-analyze verify` on copies of deploy/systemd/*.service whose Exec*=
#                programs that are not installed here point at stub executables, so only
#                genuine unit errors fail (any message about the unit, e.g. an unknown key).
#   kubernetes   every document of deploy/kubernetes/*.yaml against the Kubernetes JSON
#                schemas bundled with kubernetes-validate (strict: unknown fields fail; works
#                offline). A custom resource (e.g. cert-manager's Certificate) the validator
#                has no schema for is skipped, and the skip is printed.
#   prometheus   `promtool check rules` on deploy/prometheus/*-rules.yml and `promtool test
#                rules` on their tests (*.test.yml): the alerting rules parse and fire on the
#                series their tests give, and only there.
#   images       every FROM of deploy/**/Containerfile* and Dockerfile* names its image by
#                digest (`@sha256:` and 64 hex digits), or a stage built earlier in the file.
#   env-files    the env examples (deploy/**/*.env.example) and the units carry no comment
#                after a value: systemd would make it part of the value.
#   references   every ESTATE_* name and every `--flag` given to estate-admin, estate-agent or
#                estatectl in deploy/, README.md and deploy/README.md (command lines that
#                invoke them, and the READMEs' flag and command tables) exists in the --help
#                of the binary (and subcommand) it belongs to, with the same variable.
#                The binaries come from $ESTATE_BIN_DIR (default
#                ${CARGO_TARGET_DIR:-$HOME/.cache/estate-target}/debug): build them first.
#
# Usage:
#   scripts/check-deploy.sh              all checks on this repository; exit 1 on any problem
#   scripts/check-deploy.sh --self-test  proves the checks catch mistakes: copies deploy/ (and
#                                        README.md) to a temporary directory, checks that the
#                                        copy passes, then seeds one mistake per copy (a bad
#                                        Ref, an unknown unit directive, ...) and checks that
#                                        each is caught, naming the file
#   scripts/check-deploy.sh [--root DIR] [--only CHECK]...
#                                        the checks on DIR/deploy and DIR/README.md, or only
#                                        the named ones (cfn-lint, systemd, kubernetes,
#                                        images, env-files, references)
# Needs the project's .venv (scripts/setup.sh: cfn-lint, kubernetes-validate), systemd-analyze
# and promtool (Debian's prometheus).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # REPO, VENV
SELF="$REPO/scripts/check-deploy.sh"
PY="$VENV/bin/python"
CFN_LINT="$VENV/bin/cfn-lint"
BIN_DIR="${ESTATE_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/estate-target}/debug}"
ALL_CHECKS=(cfn-lint systemd kubernetes prometheus images env-files references)

# ESTATE_* names that are no flag's variable but may appear in the checked files, each with the
# reason. NAME_* allows every name with that prefix.
ALLOWED_NAMES=(
    ESTATE_ADMIN_READY       # not a variable: the line the administrator prints when ready
    ESTATE_BIN_DIR           # this script's input, and run-local.sh's (binaries already built)
    'ESTATE_FUZZ_*'          # scripts/fuzz.sh (workers, corpus)
    'ESTATE_BENCH_*'         # benchmark sizes (BENCHMARKS.md)
    'ESTATE_FAULT_*'         # the fault-injection tests
    ESTATE_REALISTIC_CASES   # the size of the tests' realistic policy corpus
    'ESTATE_LOCAL_*'         # scripts/run-local.sh (ports and state directory of the local demo)
    ESTATE_DASHBOARD         # the local demo's env file: the dashboard's address
    ESTATE_VIEWER_TOKEN      # the local demo's env file: its read-only client token
    ESTATE_UPDATE_SCREENSHOTS # the demo's end-to-end test copies its screenshots into docs/
)

log() { echo "check-deploy: $*"; }
failures=0
fail() {
    echo "check-deploy: FAILED: $*" >&2
    failures=$((failures + 1))
}
# Indents a command's output under the line that names the file.
indent() { sed 's/^/    /'; }

tmp_dirs=()
cleanup() { if [ "${#tmp_dirs[@]}" -gt 0 ]; then rm -rf "${tmp_dirs[@]}"; fi; }
trap cleanup EXIT
# new_tmp VAR: a new temporary directory in VAR, removed at exit (no $(...): the list of
# directories to remove must be this shell's).
new_tmp() {
    local d
    d="$(mktemp -d "${TMPDIR:-/tmp}/check-deploy.XXXXXX")"
    tmp_dirs+=("$d")
    printf -v "$1" '%s' "$d"
}

need_venv_tool() {
    if [ ! -x "$1" ]; then
        fail "$1 is missing: run scripts/setup.sh (it installs it into the project's .venv)"
        return 1
    fi
}

# deploy_files VAR ROOT DIR WHAT EXT...: the files ROOT/deploy/DIR/*.EXT, one extension after
# the other, into the array VAR (the caller's, declared before the call); when there is none,
# fails naming DIR ("deploy/DIR/: no WHAT found") and returns 1.
deploy_files() {
    local -n files_found="$1"
    local root="$2" dir="$3" what="$4" ext
    shift 4
    files_found=()
    shopt -s nullglob
    for ext in "$@"; do files_found+=("$root/deploy/$dir/"*."$ext"); done
    shopt -u nullglob
    if [ "${#files_found[@]}" = 0 ]; then
        fail "deploy/$dir/: no $what found"
        return 1
    fi
}

# ------------------------------------------------------------------------------- cfn-lint
check_cfn_lint() {
    local root="$1" t out ok
    need_venv_tool "$CFN_LINT" || return 0
    local templates=()
    deploy_files templates "$root" cloudformation template yaml yml json || return 0
    for t in "${templates[@]}"; do
        t="${t#"$root"/}"
        ok=yes
        if ! out="$(cd "$root" && "$CFN_LINT" --include-checks I -- "$t" 2>&1)"; then
            fail "$t: cfn-lint --include-checks I found problems:"
            printf '%s\n' "$out" | indent >&2
            ok=no
        fi
        # An ignored check must say why: a comment on the ignore_checks line, on the line
        # before it, or on each listed check.
        if out="$(awk '
            function indent_of(s) { match(s, /^ */); return RLENGTH }
            /ignore_checks:/ {
                inlist = 1; base = indent_of($0); justified = (prev ~ /^[[:space:]]*#/ || $0 ~ /#/)
                if ($0 ~ /ignore_checks:[[:space:]]*[^[:space:]#]/) { inlist = 0; if (!justified) print FILENAME ":" NR ": ignore_checks without a comment saying why" }
                prev = $0; next
            }
            inlist && /^[[:space:]]*-/ && indent_of($0) >= base {
                if (!justified && $0 !~ /#/ && prev !~ /^[[:space:]]*#/) print FILENAME ":" NR ": ignored check without a comment saying why"
                prev = $0; next
            }
            inlist && /^[[:space:]]*#/ { prev = $0; next }
            { inlist = 0; prev = $0 }
        ' "$root/$t")" && [ -n "$out" ]; then
            fail "$t: cfn-lint checks ignored without a justification:"
            printf '%s\n' "${out//"$root"\//}" | indent >&2
            ok=no
        fi
        if [ "$ok" = yes ]; then log "cfn-lint $t: ok"; fi
    done
}

# ------------------------------------------------------------------------------- systemd
check_systemd() {
    local root="$1" unit name work line path out rc status
    if ! command -v systemd-analyze >/dev/null 2>&1; then
        fail "systemd-analyze is missing (Debian: apt-get install systemd; scripts/setup.sh does)"
        return 0
    fi
    local units=()
    deploy_files units "$root" systemd unit service socket timer || return 0
    new_tmp work
    mkdir -p "$work/units" "$work/stubs"
    for unit in "${units[@]}"; do
        name="$(basename "$unit")"
        # The copy keeps its name (verify checks the unit type from it); an Exec*= program that
        # is not installed here becomes a stub at the same path under $work/stubs.
        while IFS= read -r line || [ -n "$line" ]; do
            if [[ $line =~ ^(Exec[A-Za-z]*=)([-@:+!]*)(/[^[:space:]]+)(.*)$ ]]; then
                path="${BASH_REMATCH[3]}"
                if [ ! -x "$path" ]; then
                    mkdir -p "$work/stubs$(dirname "$path")"
                    printf '#!/bin/sh\nexit 0\n' >"$work/stubs$path"
                    chmod 0755 "$work/stubs$path"
                    line="${BASH_REMATCH[1]}${BASH_REMATCH[2]}$work/stubs$path${BASH_REMATCH[4]}"
                fi
            fi
            printf '%s\n' "$line"
        done <"$unit" >"$work/units/$name"
        rc=0
        # --man=no: a man: link in Documentation= is not checked against this machine's pages.
        out="$(systemd-analyze verify --man=no "$work/units/$name" 2>&1)" || rc=$?
        out="${out//"$work/units/"/deploy/systemd/}"
        out="${out//"$work/stubs"/}"
        status=ok
        if [ "$rc" != 0 ]; then
            status=failed
        elif [ -n "$out" ] && printf '%s\n' "$out" | grep -qF "$name"; then
            status=failed
        fi
        if [ "$status" = ok ]; then
            log "systemd-analyze verify deploy/systemd/$name: ok"
            if [ -n "$out" ]; then
                log "  (messages not about this unit, ignored:)"
                printf '%s\n' "$out" | indent
            fi
        else
            fail "deploy/systemd/$name: systemd-analyze verify (exit $rc) reports:"
            printf '%s\n' "$out" | indent >&2
        fi
    done
}

# ------------------------------------------------------------------------------- kubernetes
check_kubernetes() {
    local root="$1" out rc=0
    need_venv_tool "$PY" || return 0
    out="$("$PY" - "$root" 2>&1 <<'PY'
import glob, os, sys
import yaml
try:
    import kubernetes_validate
    from kubernetes_validate import SchemaNotFoundError, ValidationError
except ImportError:
    print("FAIL kubernetes-validate is not installed in the project's .venv: run scripts/setup.sh")
    sys.exit(1)

root = sys.argv[1]
version = kubernetes_validate.latest_version()
files = sorted(glob.glob(os.path.join(root, "deploy/kubernetes/*.yaml"))
               + glob.glob(os.path.join(root, "deploy/kubernetes/*.yml")))
if not files:
    print("FAIL deploy/kubernetes/: no manifest found")
    sys.exit(1)
bad = False
for path in files:
    rel = os.path.relpath(path, root)
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
    except yaml.YAMLError as e:
        print(f"FAIL {rel}: not valid YAML: {e}")
        bad = True
        continue
    for n, doc in enumerate(docs, 1):
        kind = doc.get("kind", "?") if isinstance(doc, dict) else "?"
        api = doc.get("apiVersion", "?") if isinstance(doc, dict) else "?"
        name = (doc.get("metadata") or {}).get("name", "?") if isinstance(doc, dict) else "?"
        what = f"{rel}: document {n}, {kind}/{name} ({api})"
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            print(f"FAIL {what}: a Kubernetes object needs apiVersion and kind")
            bad = True
            continue
        group = api.split("/")[0] if "/" in api else ""
        builtin = group == "" or "." not in group or group.endswith(".k8s.io")
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            print(f"ok   {what}: valid against the Kubernetes {version} schema (strict)")
        except ValidationError as e:
            where = ".".join(str(p) for p in e.path) or "(top level)"
            print(f"FAIL {what}: {where}: {e.message}")
            bad = True
        except SchemaNotFoundError:
            if builtin:
                print(f"FAIL {what}: no schema for this built-in kind in Kubernetes {version}"
                      " (a misspelt kind or apiVersion?)")
                bad = True
            else:
                print(f"SKIP {what}: a custom resource; kubernetes-validate bundles no schema"
                      " for it, so it is not validated")
sys.exit(1 if bad else 0)
PY
)" || rc=$?
    while IFS= read -r line; do
        case "$line" in
            "ok   "*) log "kubernetes ${line#ok   }" ;;
            "SKIP "*) log "kubernetes SKIPPED ${line#SKIP }" ;;
            "FAIL "*) fail "${line#FAIL }" ;;
            *) echo "    $line" >&2 ;;
        esac
    done <<<"$out"
    if [ "$rc" != 0 ] && ! grep -q '^FAIL ' <<<"$out"; then
        fail "deploy/kubernetes/: the validator failed (exit $rc)"
    fi
}

check_prometheus() {
    local root="$1" f rel out n=0
    command -v promtool >/dev/null || { fail "promtool is not installed (scripts/setup.sh installs prometheus)"; return; }
    for f in "$root"/deploy/prometheus/*-rules.yml "$root"/deploy/prometheus/*.test.yml; do
        [ -e "$f" ] || continue
        rel="${f#"$root"/}"
        n=$((n + 1))
        case "$f" in
            *.test.yml) out="$(cd "$(dirname "$f")" && promtool test rules "$(basename "$f")" 2>&1)" ;;
            *) out="$(promtool check rules "$f" 2>&1)" ;;
        esac || { fail "$rel: promtool:"$'\n'"$(printf '%s\n' "$out" | indent)"; continue; }
    done
    [ "$n" -gt 0 ] || fail "deploy/prometheus/ holds no rules"
    log "prometheus: $n file(s) checked with promtool"
}

# ------------------------------------------------------------------------------- env-files
check_images() {
    local root="$1" file rel n=0 line image stages
    while IFS= read -r -d '' file; do
        rel="${file#"$root"/}"
        stages=" "
        while IFS= read -r line; do
            # FROM [--platform=...] IMAGE [AS NAME]
            read -r -a words <<<"$line"
            image=""
            for w in "${words[@]:1}"; do
                case "$w" in --*) ;; *) image="$w"; break ;; esac
            done
            n=$((n + 1))
            if [[ "$stages" == *" $image "* ]]; then
                :
            elif ! [[ "$image" =~ @sha256:[0-9a-f]{64}$ ]]; then
                fail "$rel: \`$line\` does not pin its base image by digest (IMAGE:TAG@sha256:...)"
            fi
            if [[ "${words[-2],,}" == as ]]; then stages+="${words[-1]} "; fi
        done < <(grep -iE '^[[:space:]]*FROM[[:space:]]' "$file" | sed 's/^[[:space:]]*//')
    done < <(find "$root/deploy" -type f \( -name 'Containerfile*' -o -name 'Dockerfile*' \) -print0)
    log "images: $n FROM line(s) checked"
}

check_env_files() {
    local root="$1" f rel out
    local files=()
    while IFS= read -r -d '' f; do files+=("$f"); done < <(
        find "$root/deploy" -type f \( -name '*.env' -o -name '*.env.example' -o -name '*.service' \
            -o -name '*.socket' -o -name '*.timer' \) -print0 | sort -z)
    for f in "${files[@]}"; do
        rel="${f#"$root"/}"
        case "$f" in
            *.env | *.env.example)
                # Values and commented-out values (#NAME=...) alike: KEY=VALUE, no trailing comment.
                out="$(awk '
                    /^[[:space:]]*$/ { next }
                    /^#[A-Za-z_][A-Za-z0-9_]*=/ { if ($0 ~ /[[:space:]]#/) print NR ": a comment after a commented-out value: " $0; next }
                    /^#/ { next }
                    !/^[A-Za-z_][A-Za-z0-9_]*=/ { print NR ": not a KEY=VALUE line: " $0; next }
                    /[[:space:]]#/ { print NR ": a comment after a value (it would be part of the value): " $0 }
                ' "$f")"
                ;;
            *)
                out="$(awk '
                    /^[[:space:]]*[#;]/ { next }
                    /[[:space:]]#/ { print NR ": a comment after a value (systemd keeps it in the value): " $0 }
                ' "$f")"
                ;;
        esac
        if [ -n "$out" ]; then
            fail "$rel: comments must be lines of their own:"
            printf '%s\n' "$out" | indent >&2
        else
            log "env-files $rel: ok"
        fi
    done
}

# ------------------------------------------------------------------------------- references
check_references() {
    local root="$1" out rc=0 b
    need_venv_tool "$PY" || return 0
    for b in estate-admin estate-agent estatectl; do
        if [ ! -x "$BIN_DIR/$b" ]; then
            fail "$BIN_DIR/$b is missing: build the binaries (cargo build --workspace --bins) or set ESTATE_BIN_DIR"
            return 0
        fi
    done
    local allowed=""
    for b in "${ALLOWED_NAMES[@]}"; do allowed+="$b "; done
    out="$("$PY" - "$root" "$BIN_DIR" "$allowed" 2>&1 <<'PY'
import os, re, subprocess, sys

root, bin_dir, allowed = sys.argv[1], sys.argv[2], sys.argv[3].split()
BINARIES = ("estate-admin", "estate-agent", "estatectl")
ENV_RE = re.compile(r"\bESTATE_[A-Z0-9_]+")
FLAG_RE = re.compile(r"^(--[a-z0-9][a-z0-9-]*)(?:=.*)?$")
problems = []
counted = {"names": 0, "flags": 0}


class Node:
    """One (sub)command: its long flags (flag -> ESTATE_ variable or None) and subcommands."""

    def __init__(self, path):
        self.path = path
        self.flags = {}
        self.children = {}

    @property
    def name(self):
        return " ".join(self.path)

    def walk(self):
        yield self
        for child in self.children.values():
            yield from child.walk()


def load_help(path):
    node = Node(path)
    argv = [os.path.join(bin_dir, path[0])] + path[1:] + ["--help"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        print(f"FAIL `{' '.join(path)} --help` failed (exit {p.returncode}): {p.stderr.strip()}")
        sys.exit(1)
    section, current = None, None
    for line in p.stdout.splitlines():
        if re.match(r"^[A-Z][A-Za-z ]*:$", line):
            section, current = line[:-1], None
            continue
        if section == "Commands":
            m = re.match(r"^ {2}([a-z][a-z0-9-]*)(\s|$)", line)
            if m and m.group(1) != "help":
                node.children[m.group(1)] = None
        elif section == "Options":
            m = re.match(r"^ {2,6}(?:-[A-Za-z0-9], )?(--[a-z0-9][a-z0-9-]*)", line)
            if m:
                current = m.group(1)
                node.flags[current] = None
            env = re.search(r"\[env: ([A-Z0-9_]+)", line)
            if env and current:
                node.flags[current] = env.group(1)
    for child in list(node.children):
        node.children[child] = load_help(path + [child])
    return node


HELP = {b: load_help([b]) for b in BINARIES}
ALL_FLAGS = {b: {f for n in HELP[b].walk() for f in n.flags} for b in BINARIES}
ALL_NAMES = {v for b in BINARIES for n in HELP[b].walk() for v in n.flags.values() if v}


def allowed_name(name):
    return any(name == a or (a.endswith("*") and name.startswith(a[:-1])) for a in allowed)


def problem(rel, line, message):
    problems.append(f"{rel}:{line}: {message}")


# Files whose ESTATE_* names all belong to one (sub)command.
def owner_of(rel):
    base = os.path.basename(rel)
    if rel.startswith("deploy/systemd/") and base.startswith("estate-admin"):
        return HELP["estate-admin"].children["serve"]
    if rel.startswith("deploy/systemd/") and base.startswith("estate-agent"):
        return HELP["estate-agent"].children["run"]
    if rel.startswith("deploy/kubernetes/") and base.startswith("administrator"):
        return HELP["estate-admin"].children["serve"]
    return None


def check_names(rel, text):
    owner = owner_of(rel)
    for m in ENV_RE.finditer(text):
        name = m.group(0)
        line = text.count("\n", 0, m.start()) + 1
        counted["names"] += 1
        if allowed_name(name):
            continue
        if owner is not None:
            if name not in owner.flags.values():
                problem(rel, line, f"{name} is not a variable of `{owner.name}` (its --help names"
                        f" {', '.join(sorted(v for v in owner.flags.values() if v))})")
        elif name not in ALL_NAMES:
            problem(rel, line, f"{name} is not a variable of estate-admin, estate-agent or estatectl"
                    " (nor in this script's allow-list)")


def clean(token):
    token = re.sub(r"^[A-Za-z_][A-Za-z0-9_]*=", "", token)  # ExecStart=..., NAME=value
    return token.strip("`\"'[](){},;:.")


def node_for(tokens, binary):
    """The deepest subcommand named by the bare tokens (flag values cannot be subcommands
    here: no value of the checked command lines is one)."""
    node = HELP[binary]
    for t in tokens:
        t = clean(t)
        if not t.startswith("-") and t in node.children:
            node = node.children[t]
    return node


def check_flags(rel, line, binary, node, flags, context):
    # Without a subcommand (prose such as "estate-admin --organizations") any of the
    # binary's subcommands may be meant.
    known = node.flags if (node.path != [binary] or not node.children) else ALL_FLAGS[binary]
    for flag in flags:
        counted["flags"] += 1
        if flag not in known:
            problem(rel, line, f"`{flag}` is not a flag of `{node.name}` ({context})")


def flags_in(tokens):
    out = []
    for t in tokens:
        m = FLAG_RE.match(clean(t))
        if m:
            out.append(m.group(1))
    return out


SEPARATORS = {"|", "||", "&&", ";", "&", "then", "do"}


def scan_command_line(rel, line, text):
    """Flags given to an Estate binary on one (logical) command line."""
    commands, current = [], []
    for t in text.split():
        if t in SEPARATORS or t.startswith("#"):
            commands.append(current)
            current = []
        elif t.endswith(";"):
            current.append(t[:-1])
            commands.append(current)
            current = []
        else:
            current.append(t)
    commands.append(current)
    for cmd in commands:
        for i, t in enumerate(cmd):
            binary = os.path.basename(clean(t))
            if binary not in BINARIES:
                continue
            if i > 0 and clean(cmd[i - 1]).startswith("-"):
                continue  # the value of another tool's option, e.g. podman run --name estate-admin
            rest = cmd[i + 1:]
            if not rest:
                continue
            first = clean(rest[0])
            if not (first.startswith("--") or first in HELP[binary].children):
                continue  # prose ("estate-agent reads ..."), an install path, ...
            node = node_for(rest, binary)
            check_flags(rel, line, binary, node, flags_in(rest), "command line")
            break


def logical_lines(lines, first_line):
    out, buf, start = [], "", None
    for i, l in enumerate(lines):
        if start is None:
            start = first_line + i
        if l.rstrip().endswith("\\"):
            buf += l.rstrip()[:-1] + " "
            continue
        out.append((start, buf + l))
        buf, start = "", None
    if start is not None:
        out.append((start, buf))
    return out


def owners_from_spans(text):
    owners = []
    for span in re.findall(r"`([^`]+)`", text):
        tokens = span.split()
        if tokens and clean(tokens[0]) in BINARIES:
            owners.append(node_for(tokens[1:], clean(tokens[0])))
    return owners


def owners_from_heading(heading):
    h = heading.lower()
    if "agent" in h:
        return [HELP["estate-agent"].children["run"]]
    if "administrator" in h:
        return [HELP["estate-admin"].children["serve"]]
    if "client" in h:
        return [HELP["estatectl"]]
    return []


def cells_of(row):
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def spans(cell):
    return [s.replace("\\|", "|") for s in re.findall(r"`([^`]+)`", cell)]


def check_table(rel, rows, intro, heading):
    header = [c.lower() for c in cells_of(rows[0][1])]
    if not header or header[0] not in ("flag", "command"):
        return
    owners = owners_from_spans(intro) if intro.rstrip().endswith(":") else []
    if not owners:
        owners = owners_from_heading(heading)
    if not owners:
        problem(rel, rows[0][0], "a flag table whose binary is unclear: name it (`estate-admin"
                " serve`:) in the line before the table, or under a heading naming it")
        return
    for line, row in rows[2:]:
        cells = cells_of(row)
        if not cells:
            continue
        if header[0] == "command":
            first = spans(cells[0])
            if not first:
                continue
            for owner in owners:
                tokens = first[0].split()
                if not tokens or clean(tokens[0]) not in owner.children:
                    problem(rel, line, f"`{tokens[0] if tokens else ''}` is not a subcommand of `{owner.name}`")
                    continue
                node = node_for(tokens, owner.path[0]) if owner.path == [owner.path[0]] else owner
                words = [w for cell in cells for s in spans(cell) for w in s.split()]
                check_flags(rel, line, owner.path[0], node, flags_in(words), "command table")
            continue
        # A flag table: `--flag ARG`, ... | `ESTATE_NAME`, ... | ... meaning (may name flags)
        flags = [f for s in spans(cells[0]) for f in flags_in(s.split()[:1])]
        names = []
        if len(header) > 1 and header[1] in ("env", "variable") and len(cells) > 1:
            names = [m.group(0) for s in spans(cells[1]) for m in [ENV_RE.match(s)] if m]
        others = [f for cell in cells[2:] for s in spans(cell) for f in flags_in(s.split()[:1])]
        for owner in owners:
            check_flags(rel, line, owner.path[0], owner, flags + others, "flag table")
            if names and len(names) != len(flags):
                problem(rel, line, f"{len(flags)} flag(s) but {len(names)} variable(s): cannot pair them")
                continue
            for flag, name in zip(flags, names):
                actual = owner.flags.get(flag)
                if flag in owner.flags and actual != name:
                    problem(rel, line, f"`{flag}` of `{owner.name}` is set by {actual or 'no variable'},"
                            f" not {name}")


def scan_markdown(rel, text):
    lines = text.split("\n")
    prose = list(lines)
    i, heading = 0, ""
    fence = None
    block, block_start = [], 0
    table, intro, prev_nonblank = [], "", ""
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if fence is not None:
            prose[n - 1] = ""
            if stripped.startswith(fence):
                for start, logical in logical_lines(block, block_start):
                    scan_command_line(rel, start, logical)
                fence, block = None, []
            else:
                block.append(line)
            continue
        if stripped.startswith("```") or stripped.startswith("~~~"):
            fence, block, block_start = stripped[:3], [], n + 1
            prose[n - 1] = ""
            prev_nonblank = stripped
            continue
        if stripped.startswith("|"):
            if not table:
                intro = prev_nonblank
            table.append((n, line))
            continue
        if table:
            check_table(rel, table, intro, heading)
            table = []
        if stripped.startswith("#"):
            heading = stripped.lstrip("#").strip()
        if stripped:
            prev_nonblank = stripped
    if table:
        check_table(rel, table, intro, heading)
    # Inline code spans outside fences (a span may wrap onto the next line of its paragraph).
    rest = "\n".join(prose)
    for m in re.finditer(r"`((?:[^`\n]|\n(?![ \t]*\n))+)`", rest):
        scan_command_line(rel, rest.count("\n", 0, m.start()) + 1, m.group(1).replace("\n", " "))


files = []
for d, _, names in os.walk(os.path.join(root, "deploy")):
    files += [os.path.join(d, f) for f in names]
files.append(os.path.join(root, "README.md"))
checked = 0
for path in sorted(files):
    rel = os.path.relpath(path, root)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (UnicodeDecodeError, FileNotFoundError):
        continue
    checked += 1
    check_names(rel, text)
    if rel.endswith(".md"):
        scan_markdown(rel, text)
    else:
        for start, logical in logical_lines(text.split("\n"), 1):
            scan_command_line(rel, start, logical)

for p in problems:
    print(f"FAIL {p}")
print(f"INFO {counted['names']} ESTATE_* names and {counted['flags']} Estate flags in {checked} files"
      f" checked against the --help of {', '.join(BINARIES)} ({bin_dir})")
sys.exit(1 if problems else 0)
PY
)" || rc=$?
    local summary=""
    while IFS= read -r line; do
        case "$line" in
            "FAIL "*) fail "${line#FAIL }" ;;
            "INFO "*) summary="${line#INFO }" ;;
            *) echo "    $line" >&2 ;;
        esac
    done <<<"$out"
    if [ "$rc" = 0 ]; then
        log "references: $summary: ok"
    elif ! grep -q '^FAIL ' <<<"$out"; then
        fail "references: the check itself failed (exit $rc)"
    fi
}

run_checks() {
    local root="$1"
    shift
    local c
    for c in "$@"; do
        case "$c" in
            cfn-lint) check_cfn_lint "$root" ;;
            systemd) check_systemd "$root" ;;
            kubernetes) check_kubernetes "$root" ;;
            prometheus) check_prometheus "$root" ;;
            images) check_images "$root" ;;
            env-files) check_env_files "$root" ;;
            references) check_references "$root" ;;
            *) fail "unknown check $c (one of: ${ALL_CHECKS[*]})" ;;
        esac
    done
}

# ------------------------------------------------------------------------------- self-test
# Copies deploy/ and README.md to DIR, then lets the caller seed a mistake there.
fresh_copy() {
    local dir="$1"
    mkdir -p "$dir"
    cp -a "$REPO/deploy" "$dir/"
    cp "$REPO/README.md" "$dir/"
}

# Inserts TEXT (one or more lines) after the first line matching REGEX in FILE.
insert_after() {
    local file="$1" regex="$2" text="$3"
    if ! grep -qE "$regex" "$file"; then
        echo "check-deploy: self-test cannot seed $file: no line matches $regex" >&2
        return 1
    fi
    awk -v re="$regex" -v text="$text" '{ print } !done && $0 ~ re { print text; done = 1 }' \
        "$file" >"$file.new"
    mv "$file.new" "$file"
}

self_test() {
    local work passed=0 broken=0 out rc ok
    new_tmp work
    # tally OK PASSED FAILED: counts the case just run as passed (OK = yes), logging PASSED, or
    # as broken, reporting FAILED with the run's exit status ($rc) and output ($out).
    tally() {
        if [ "$1" = yes ]; then
            log "self-test: $2"
            passed=$((passed + 1))
        else
            echo "check-deploy: self-test FAILED: $3 (exit $rc):" >&2
            printf '%s\n' "$out" | indent >&2
            broken=$((broken + 1))
        fi
    }
    # expect DESCRIPTION CHECK FILE-TO-NAME TEXT-TO-FIND: that check fails on $work/CASE and its
    # output names the file and shows TEXT.
    expect_caught() {
        local case="$1" what="$2" check="$3" file="$4" needle="$5" ok=no
        rc=0
        out="$(bash "$SELF" --root "$work/$case" --only "$check" 2>&1)" || rc=$?
        if [ "$rc" != 0 ] && grep -qF -- "$file" <<<"$out" && grep -qF -- "$needle" <<<"$out"; then
            ok=yes
        fi
        tally "$ok" "$what: caught by $check, naming $file" "$what was not caught by $check"
    }

    fresh_copy "$work/clean"
    rc=0
    out="$(bash "$SELF" --root "$work/clean" 2>&1)" || rc=$?
    ok=no
    if [ "$rc" = 0 ]; then ok=yes; fi
    tally "$ok" "the unmodified copy passes every check" "the unmodified copy does not pass"

    local cfn=deploy/cloudformation/member.yaml unit=deploy/systemd/estate-agent.service
    local envfile=deploy/systemd/estate-agent.env.example k8s=deploy/kubernetes/administrator.yaml

    # (i) a Ref to a resource that does not exist
    fresh_copy "$work/bad-ref"
    insert_after "$work/bad-ref/$cfn" '^Outputs:' \
        "  SelfTestBadRef:"$'\n'"    Value: !Ref NoSuchResourceSeededBySelfTest"
    expect_caught bad-ref "a Ref to a missing resource in $cfn" cfn-lint "$cfn" NoSuchResourceSeededBySelfTest

    # (ii) an unknown directive in a unit
    fresh_copy "$work/bad-directive"
    insert_after "$work/bad-directive/$unit" '^\[Service\]' "SelfTestUnknownDirective=yes"
    expect_caught bad-directive "an unknown directive in $unit" systemd "$(basename "$unit")" SelfTestUnknownDirective

    # (iii) a flag the agent does not have, on the unit's command line
    fresh_copy "$work/bad-flag"
    sed -i 's|^\(ExecStart=.*estate-agent run\)|\1 --self-test-no-such-flag|' "$work/bad-flag/$unit"
    expect_caught bad-flag "an unknown flag on the ExecStart= line of $unit" references "$unit" --self-test-no-such-flag

    # (iv) a variable the agent does not read, in its env example
    fresh_copy "$work/bad-variable"
    printf 'ESTATE_SELF_TEST_NO_SUCH_VARIABLE=1\n' >>"$work/bad-variable/$envfile"
    expect_caught bad-variable "an unknown variable in $envfile" references "$envfile" ESTATE_SELF_TEST_NO_SUCH_VARIABLE

    # (v) a comment after a value in the env example
    fresh_copy "$work/trailing-comment"
    printf 'ESTATE_CONCURRENCY=8 # self-test\n' >>"$work/trailing-comment/$envfile"
    expect_caught trailing-comment "a comment after a value in $envfile" env-files "$envfile" "# self-test"

    # (vi) a field Kubernetes does not know, in the manifest's first object
    fresh_copy "$work/bad-field"
    insert_after "$work/bad-field/$k8s" '^metadata:' "  selfTestUnknownField: true"
    expect_caught bad-field "an unknown field in $k8s" kubernetes "$k8s" selfTestUnknownField

    # (vii) an alert that no longer fires where its test expects it
    local rules=deploy/prometheus/estate-rules.yml
    fresh_copy "$work/bad-alert"
    sed -i 's|expr: estate_members_disconnected > 0|expr: estate_members_disconnected > 5|' "$work/bad-alert/$rules"
    expect_caught bad-alert "an alert its test expects that no longer fires in $rules" prometheus \
        deploy/prometheus/estate-rules.test.yml EstateAgentsDisconnected

    # (viii) a base image named by tag only
    local containerfile=deploy/container/Containerfile
    fresh_copy "$work/unpinned"
    sed -i 's|^\(FROM docker.io/library/debian:bookworm-slim\)@sha256:[0-9a-f]*|\1|' "$work/unpinned/$containerfile"
    expect_caught unpinned "a base image without a digest in $containerfile" images "$containerfile" "debian:bookworm-slim\`"

    if [ "$broken" = 0 ]; then
        log "self-test: ok ($passed cases: the unmodified copy passes, each seeded mistake is caught)"
    else
        echo "check-deploy: self-test FAILED: $broken of $((passed + broken)) cases" >&2
        exit 1
    fi
}

# ------------------------------------------------------------------------------- main
root="$REPO"
only=()
mode=check
while [ "$#" -gt 0 ]; do
    case "$1" in
        --self-test) mode=self-test ;;
        --root)
            root="$(cd "${2:?--root needs a directory}" && pwd)"
            shift
            ;;
        --only)
            only+=("${2:?--only needs a check name}")
            shift
            ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "check-deploy: unknown argument $1 (see --help)" >&2
            exit 2
            ;;
    esac
    shift
done

if [ "$mode" = self-test ]; then
    self_test
    exit 0
fi
if [ "${#only[@]}" = 0 ]; then only=("${ALL_CHECKS[@]}"); fi
run_checks "$root" "${only[@]}"
if [ "$failures" != 0 ]; then
    log "$failures problem(s) found"
    exit 1
fi
log "all checks passed (${only[*]})"
