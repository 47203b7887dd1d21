#!/usr/bin/env bash
# Fails when a C++ source differs from what clang-format (14, .clang-format) would write.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mapfile -t files < <(git ls-files '*.hpp' '*.cpp' 2>/dev/null || find include tests examples benchmarks -name '*.[hc]pp')
clang-format --dry-run -Werror "${files[@]}"
echo "== clang-format: ${#files[@]} files clean"
