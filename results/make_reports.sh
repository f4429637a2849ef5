#!/usr/bin/env bash
# Regenerates every table, plot and analysis under results/ from the committed records (no number typed by hand).
#   bash results/make_reports.sh [DATA_ROOT [SUITE ...]]   (DATA_ROOT: where MNIST lives, default ../shared/data;
#                                                          SUITE: only these results folders, default all)
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
suites=("${@:2}")
[ ${#suites[@]} -gt 0 ] || suites=(ci ci_train quickstart mnist cifar10_jpeg_small robust_ssl_mnist transfer_mnist_digits transfer_cifar_jpeg)
for suite in "${suites[@]}"; do
  dir=results/$suite
  [ -f "$dir/records.jsonl" ] || continue
  rocl-bench table "$dir" --format md --out "$dir/table.md"
  rocl-bench table "$dir" --format latex --out "$dir/table.tex"
  rocl-bench table "$dir" --format csv --out "$dir/table.csv"
  rocl-bench table "$dir" --kind transfer --format md --out "$dir/transfer.md" || true
  rocl-bench table "$dir" --kind gap --base simclr_le --reference standard \
    --models simclr_fn_oracle_le,simclr_fn_sim_le --format md --out "$dir/gap.md" 2>/dev/null || true
  # paired comparisons behind the verdicts (results/README.md); pairs a suite lacks are skipped
  for pair in "rocl_rle madry_8ep" "rocl_rle madry" "rocl_at rocl_rle" "rocl_trades rocl_rle" "simclr_le standard" \
              "simclr_fn_oracle_le simclr_le" "simclr_fn_sim_le simclr_le" "rocl_fn_rle rocl_rle" \
              "rocl_15ep_rle rocl_rle" "rocl_15ep_rle madry_8ep" "rocl_15ep_at rocl_15ep_rle" "rocl_15ep_at madry_8ep" \
              "acl_slf rocl_slf" "advcl_slf acl_slf" "dynacl_slf advcl_slf" "dynaclpp_slf dynacl_slf" \
              "acl_alf rocl_alf" "advcl_alf acl_alf" "dynacl_alf advcl_alf" "dynaclpp_alf dynacl_alf" \
              "acl_aff rocl_aff" "advcl_aff acl_aff" "dynacl_aff advcl_aff" "dynaclpp_aff dynacl_aff" \
              "mnist_slf digits_slf" "mnist_alf digits_alf" "c04_slf c59_slf" "c04_alf c59_alf"; do
    rocl-bench compare "$dir" $pair 2>/dev/null && echo || true
  done > "$dir/paired.md.tmp"
  if [ -s "$dir/paired.md.tmp" ]; then mv "$dir/paired.md.tmp" "$dir/paired.md"; else rm "$dir/paired.md.tmp"; fi
  rocl-bench plot "$dir" --kind eps-curve --out "$dir/eps_curve.png"
  rocl-bench plot "$dir" --kind transfer --out "$dir/transfer.png" || true
  if [ -d "$dir/models" ]; then
    rocl-bench plot "$dir" --kind training --out "$dir/training.png" || true
    rocl-bench analyze "$dir" --data-root "$data" --out "$dir/analysis"
  fi
done
python results/fill_tables.py
