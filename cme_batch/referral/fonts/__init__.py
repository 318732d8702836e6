"""DejaVu Sans Condensed (regular and bold), shipped so the referral PDF looks the same everywhere.

The fonts are free to redistribute under the Bitstream Vera licence in LICENSE.txt beside them.
"""
