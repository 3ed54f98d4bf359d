"""data.formats.expression: Xena / samples x genes matrices, the multi-sample rule, duplicates, NaN."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from modaltune.data.formats import read_expression
from modaltune.errors import InputError, InputWarning


def test_read_expression_xena_multi_sample_rule(tmp_path):
    genes = ["TP53", "EGFR", "MYC"]
    cols = ["TCGA-A1-0001-11", "TCGA-A1-0001-01", "TCGA-A1-0002-06", "TCGA-A1-0002-02", "TCGA-A1-0003-01",
            "TCGA-A1-0004-11"]
    vals = np.arange(len(genes) * len(cols), dtype=float).reshape(len(genes), len(cols))
    df = pd.DataFrame(vals, index=genes, columns=cols)
    df.index.name = "sample"
    p = tmp_path / "HiSeqV2.tsv.gz"
    with gzip.open(p, "wt") as fh:
        df.to_csv(fh, sep="\t")
    with pytest.warns(InputWarning, match="several expression samples"):
        expr = read_expression(p)
    assert list(expr.index) == ["TCGA-A1-0001", "TCGA-A1-0002", "TCGA-A1-0003", "TCGA-A1-0004"]
    assert expr.index.name == "case_id" and list(expr.columns) == genes
    assert expr.loc["TCGA-A1-0001", "TP53"] == vals[0, 1]   # -01 beats -11 although later in the file
    assert expr.loc["TCGA-A1-0002", "EGFR"] == vals[1, 3]   # lowest code: -02 beats -06
    assert expr.loc["TCGA-A1-0004", "MYC"] == vals[2, 5]    # only a normal sample: kept
    assert expr.attrs["sample_choice"] == {"TCGA-A1-0001": "TCGA-A1-0001-01", "TCGA-A1-0002": "TCGA-A1-0002-02"}
    assert expr.attrs["samples_dropped"]["TCGA-A1-0001"] == ["TCGA-A1-0001-11"]


def test_read_expression_same_code_uses_file_order(tmp_path):
    df = pd.DataFrame([[1.0, 2.0], [3.0, 4.0]], index=["G1", "G2"], columns=["TCGA-A1-0001-01B", "TCGA-A1-0001-01A"])
    p = tmp_path / "e.tsv"
    df.to_csv(p, sep="\t")
    with pytest.warns(InputWarning):
        expr = read_expression(p)
    assert expr.attrs["sample_choice"] == {"TCGA-A1-0001": "TCGA-A1-0001-01B"}
    assert expr.loc["TCGA-A1-0001"].tolist() == [1.0, 3.0]


def test_read_expression_duplicated_sample_column_says_which_is_kept(tmp_path):
    p = tmp_path / "e.tsv"
    p.write_text("sample\tTCGA-A1-0001-01\tTCGA-A1-0002-01\tTCGA-A1-0001-01\n"
                 "G1\t1.0\t2.0\t9.0\nG2\t3.0\t4.0\t9.0\n")
    with pytest.warns(InputWarning, match="appear more than once") as rec:
        expr = read_expression(p)
    msg = next(str(w.message) for w in rec if "more than once" in str(w.message))
    assert "first occurrence in file order is kept" in msg and "positions 1, 3" in msg
    assert str(p) in msg and "case: TCGA-A1-0001" in msg and "fix:" in msg
    assert expr.loc["TCGA-A1-0001"].tolist() == [1.0, 3.0]
    assert not [w for w in rec if "several expression samples" in str(w.message)]


def test_read_expression_samples_x_genes_and_duplicate_genes(tmp_path):
    df = pd.DataFrame([[1.0, 2.0, 4.0], [3.0, 5.0, 7.0]], index=["TCGA-A1-0001-01", "TCGA-A1-0002-01"],
                      columns=["G1", "G2", "G2"])
    p = tmp_path / "e.csv"
    df.to_csv(p)
    with pytest.warns(InputWarning, match="G2.*averaged|averaged.*G2"):
        expr = read_expression(p)
    assert list(expr.columns) == ["G1", "G2"]
    assert expr.loc["TCGA-A1-0002", "G2"] == 6.0 and expr.loc["TCGA-A1-0001", "G1"] == 1.0


def test_read_expression_non_tcga_orientation_rules(tmp_path):
    # genes outnumber samples: the longer axis is the genes (samples x genes here)
    df = pd.DataFrame(np.ones((2, 5)), index=["p1", "p2"], columns=[f"G{i}" for i in range(5)])
    p = tmp_path / "a.tsv"
    df.to_csv(p, sep="\t")
    assert read_expression(p).shape == (2, 5)
    # a gene header on the first column: genes x samples even though square
    sq = pd.DataFrame(np.ones((2, 2)), index=["G1", "G2"], columns=["p1", "p2"])
    sq.index.name = "gene_symbol"
    sq.to_csv(tmp_path / "b.tsv", sep="\t")
    assert list(read_expression(tmp_path / "b.tsv").index) == ["p1", "p2"]
    sq.index.name = "x"
    sq.to_csv(tmp_path / "c.tsv", sep="\t")
    with pytest.raises(InputError, match="orientation.*c.tsv"):
        read_expression(tmp_path / "c.tsv")
    assert list(read_expression(tmp_path / "c.tsv", orientation="samples_x_genes").index) == ["G1", "G2"]
    with pytest.raises(InputError, match="unknown expression orientation"):
        read_expression(tmp_path / "c.tsv", orientation="sideways")


def test_read_expression_nan(tmp_path):
    df = pd.DataFrame([[1.0, np.nan, 2.0], [3.0, 4.0, np.inf]], index=["G1", "G2"],
                      columns=["TCGA-A1-0001-01", "TCGA-A1-0002-01", "TCGA-A1-0003-01"])
    p = tmp_path / "expr_nan.tsv"
    df.to_csv(p, sep="\t")
    with pytest.raises(InputError, match=r"2 NaN/inf.*2 sample\(s\) \(TCGA-A1-0002-01, TCGA-A1-0003-01\).*"
                                         r"2 gene\(s\).*expr_nan.tsv.*fix:"):
        read_expression(p)
