"""Formulas balance (DESIGN 10.2): the pure rule, without an application or a database."""

from decimal import Decimal

from compounding.services.balance import Line, balance


def active(name: str, quantity: str, unit: str = "mL") -> Line:
    return Line(unit, Decimal(quantity), False, "active", name)


def saline(quantity: str | None = None, *, qs: bool = False, name: str = "Saline") -> Line:
    return Line("mL", Decimal(quantity) if quantity is not None else None, qs, "diluent", name)


def test_liquids_that_fill_the_unit_exactly_balance_without_a_qs_line():
    result = balance([active("Hyaluronic acid", "4"), saline("1")], Decimal("5"))
    assert (result.balanced, result.qs_quantity, result.total_ml) == (True, None, Decimal("5"))


def test_liquids_over_the_unit_volume_are_refused_naming_both_totals():
    result = balance([active("Hyaluronic acid", "4"), saline("4")], Decimal("5"))
    assert not result.balanced
    assert result.refusal == "Components in mL add up to 8 mL; the unit holds 5 mL."


def test_liquids_under_the_unit_volume_without_qs_are_refused_and_told_to_mark_a_diluent():
    result = balance([active("Hyaluronic acid", "1"), saline("1")], Decimal("5"))
    assert result.refusal.startswith("Components in mL add up to 2 mL; the unit holds 5 mL")
    assert "qs" in result.refusal


def test_the_qs_diluent_gets_the_difference_and_any_quantity_sent_is_ignored():
    result = balance([active("Hyaluronic acid", "2"), active("Lidocaine", "0.5"), saline("99", qs=True)],
                     Decimal("5"))
    assert result.balanced
    assert (result.qs_quantity, result.measured_ml, result.total_ml) == (Decimal("2.5"), Decimal("2.5"),
                                                                         Decimal("5"))


def test_a_qs_line_needs_no_quantity_at_all():
    assert balance([active("Hyaluronic acid", "2"), saline(qs=True)], Decimal("5")).qs_quantity == Decimal("3")


def test_solids_do_not_take_up_volume():
    result = balance([active("Biotin", "10", unit="mg"), saline(qs=True)], Decimal("5"))
    assert (result.qs_quantity, result.measured_ml) == (Decimal("5"), Decimal("0"))


def test_a_formula_of_solids_only_is_unbalanced_until_a_diluent_fills_it():
    result = balance([active("Biotin", "10", unit="mg"), active("Minoxidil", "25", unit="mg")], Decimal("5"))
    assert result.refusal.startswith("Components in mL add up to 0 mL; the unit holds 5 mL")


def test_a_qs_line_left_with_nothing_to_fill_is_refused():
    result = balance([active("Hyaluronic acid", "5"), saline(qs=True)], Decimal("5"))
    assert result.refusal == ("Components in mL add up to 5 mL; the unit holds 5 mL before Saline: "
                              "nothing is left to fill to volume.")
    assert balance([active("Hyaluronic acid", "6"), saline(qs=True)], Decimal("5")).refusal.startswith(
        "Components in mL add up to 6 mL; the unit holds 5 mL")


def test_two_qs_lines_are_refused_naming_both():
    result = balance([active("Hyaluronic acid", "1"), saline(qs=True), saline(qs=True, name="Water")],
                     Decimal("5"))
    assert result.refusal == "Only one component can be filled to volume (qs); Saline and Water are both marked."


def test_only_a_diluent_can_be_filled_to_volume():
    result = balance([Line("mL", None, True, "active", "Hyaluronic acid")], Decimal("5"))
    assert result.refusal == "Only a diluent can be filled to volume (qs): Hyaluronic acid is active."


def test_only_a_diluent_measured_in_ml_can_be_filled_to_volume():
    result = balance([active("Hyaluronic acid", "2"), Line("g", None, True, "diluent", "Mannitol")], Decimal("5"))
    assert result.refusal == ("Only a diluent measured in mL can be filled to volume (qs): "
                              "Mannitol is measured in g.")


def test_a_zero_or_negative_quantity_is_refused_naming_the_component():
    for quantity in ("0", "-1"):
        result = balance([active("Hyaluronic acid", quantity), saline(qs=True)], Decimal("5"))
        assert result.refusal == "The quantity of Hyaluronic acid must be greater than zero."


def test_volumes_keep_their_decimals_exactly():
    result = balance([active("A", "1.1"), active("B", "2.2"), saline(qs=True)], Decimal("5"))
    assert result.qs_quantity == Decimal("1.7")
    assert balance([active("A", "1.1"), active("B", "2.2"), saline("1.7")], Decimal("5.000")).balanced
