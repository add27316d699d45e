"""The check digits of Korean and card numbers: a shape with a valid one is far more likely
to be the number it looks like (formulas in docs/korean.md)."""

from __future__ import annotations


def luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for i, char in enumerate(digits):
        d = int(char)
        if i % 2 == parity:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def rrn_checksum_ok(digits: str) -> bool:
    """The 주민등록번호 check digit (numbers issued since Oct 2020 may fail it: confidence only)."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    weights = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]
    check = (11 - sum(int(d) * w for d, w in zip(digits, weights)) % 11) % 10
    return check == int(digits[12])


def brn_checksum_ok(digits: str) -> bool:
    """사업자등록번호 (10 digits): weights 1,3,7,1,3,7,1,3,5; the 9th digit × 5 adds its tens."""
    if len(digits) != 10 or not digits.isdigit():
        return False
    d = [int(c) for c in digits]
    total = sum(x * w for x, w in zip(d, [1, 3, 7, 1, 3, 7, 1, 3]))
    total += d[8] * 5 + d[8] * 5 // 10
    return (10 - total % 10) % 10 == d[9]


def corporate_checksum_ok(digits: str) -> bool:
    """법인등록번호 (13 digits): weights 1,2,1,2,… over the first 12, check (10 − Σ mod 10) mod 10."""
    if len(digits) != 13 or not digits.isdigit():
        return False
    total = sum(int(c) * (1 + i % 2) for i, c in enumerate(digits[:12]))
    return (10 - total % 10) % 10 == int(digits[12])
