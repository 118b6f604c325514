# shellcheck shell=bash
# Puts Node.js 24 LTS (the version in .node-version) first on PATH, for CI and for machines whose
# system Node is older. Source it: `. scripts/use-node.sh`.
#
# The binary comes from the npm registry's `node-linux-<arch>` package (the official build, packed
# for npm), so it installs wherever `npm` can reach its registry, with no other download. It is kept
# in NODE_CACHE_DIR (default ~/.cache/scim-gateway) and reused; `npm` itself is the one already on
# the machine, run by the new `node`.
_want="$(cat "$(dirname "${BASH_SOURCE[0]}")/../.node-version")"
if [ "$(node --version 2>/dev/null)" != "v${_want}" ]; then
  case "$(uname -m)" in
    x86_64) _arch=x64 ;;
    aarch64 | arm64) _arch=arm64 ;;
    *) echo "use-node: no node-linux package for $(uname -m); install Node.js ${_want} yourself" >&2; return 1 ;;
  esac
  _dir="${NODE_CACHE_DIR:-$HOME/.cache/scim-gateway}/node-v${_want}-linux-${_arch}"
  if [ ! -x "${_dir}/bin/node" ]; then
    command -v npm >/dev/null || { echo "use-node: npm is needed to fetch Node.js ${_want} (apt-get install npm)" >&2; return 1; }
    _tmp="$(mktemp -d)"
    (cd "${_tmp}" && npm pack --silent "node-linux-${_arch}@${_want}" >/dev/null && tar xzf ./*.tgz) || { rm -rf "${_tmp}"; echo "use-node: could not fetch node-linux-${_arch}@${_want} from the npm registry" >&2; return 1; }
    mkdir -p "$(dirname "${_dir}")" && rm -rf "${_dir}" && mv "${_tmp}/package" "${_dir}" && rm -rf "${_tmp}"
  fi
  export PATH="${_dir}/bin:${PATH}"
fi
echo "use-node: $(command -v node) $(node --version)" >&2
unset _want _arch _dir _tmp
