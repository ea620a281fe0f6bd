"""Numbers, money and durations as sequences of prompt ids, in English and Spanish.

Every function returns a list of catalog ids in the asked language; playing them in order says the
quantity. Range: whole numbers 0..999,999 (`NUMBER_MAX`).

English follows American usage: "one hundred twenty-five" (no "and"), "twenty-one thousand".

Spanish agrees with the noun that follows (`form`):

* ``"standalone"``: counting or naming a key: "uno", "veintiuno", "ciento uno".
* ``"m"`` before a masculine noun: apocope "un minuto", "veintiún dólares", "treinta y un
  centavos", "ciento un segundos".
* ``"f"`` before a feminine noun: "una hora", "veintiuna horas", "doscientas horas".

Thousands: "mil" (never "un mil"), "veintiún mil", "cien mil", "ciento un mil"; the hundreds of a
thousands count agree with a feminine noun ("doscientas mil horas") while its units keep the
masculine apocope ("veintiún mil horas"), both accepted by the RAE.

Money (US dollars, integer micro-units): dollars, then cents, joined by "and" / "con":
``1_250_000`` -> "one dollar and twenty-five cents" / "un dólar con veinticinco centavos";
``60_000`` -> "six cents" / "seis centavos". Amounts are never rounded: the announcement says the
exact price that is charged. A whole number of cents is said as cents; a price with a fraction of a
cent (a tariff of 6.5 cents per minute is 65,000 micros) says the cents with their decimals, digit
by digit, trailing zeros dropped: "six point five cents" / "seis punto cinco centavos"
(65,000), "zero point two five cents" (2,500). The smallest step is one micro (0.0001 cent).
"""

from __future__ import annotations

from ivr import catalog
from ivr.errors import IvrError
from ledger.money import MICROS

__all__ = [
    "NUMBER_MAX",
    "NotSayable",
    "say_number",
    "say_money",
    "say_duration",
    "say_key",
]

NUMBER_MAX = 999_999
MICROS_PER_CENT = MICROS // 100
DURATION_SECONDS_MAX = NUMBER_MAX
FORMS = ("standalone", "m", "f")


class NotSayable(IvrError, ValueError):
    """A quantity outside what the prompts can say (negative, too large, not an integer)."""

    def __init__(self, what: str, value: object, why: str):
        super().__init__(f"cannot say {what} {value!r}: {why}", what=why, where=what, value=value)
        self.why = why


def _check(what: str, value: object, top: int) -> int:
    # bool is an int; saying True as "one" would hide a bug upstream.
    if not isinstance(value, int) or isinstance(value, bool):
        raise NotSayable(what, value, "not an integer")
    if not 0 <= value <= top:
        raise NotSayable(what, value, f"outside 0..{top:,}")
    return value


# --- English -----------------------------------------------------------------------------------


def _en_below_1000(n: int) -> list[str]:
    out: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        out += [f"num_{hundreds}", "num_hundred"]
    if rest >= 20:
        tens, units = divmod(rest, 10)
        out.append(f"num_{tens * 10}")
        if units:
            out.append(f"num_{units}")
    elif rest or not out:
        out.append(f"num_{rest}")
    return out


def _en(n: int) -> list[str]:
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return _en_below_1000(n)
    out = _en_below_1000(thousands) + ["num_thousand"]
    return out + _en_below_1000(rest) if rest else out


# --- Spanish -----------------------------------------------------------------------------------


def _es_units(n: int, form: str) -> list[str]:
    """0..29: one word each; 1 and 21 take the noun's form."""
    if n in (1, 21) and form != "standalone":
        return [f"num_{n}_{form}"]
    return [f"num_{n}"]


def _es_below_100(n: int, form: str) -> list[str]:
    if n < 30:
        return _es_units(n, form)
    tens, units = divmod(n, 10)
    out = [f"num_{tens * 10}"]
    return out + ["word_and"] + _es_units(units, form) if units else out


def _es_below_1000(n: int, units_form: str, hundreds_form: str) -> list[str]:
    hundreds, rest = divmod(n, 100)
    if not hundreds:
        return _es_below_100(n, units_form)
    if hundreds == 1:
        out = ["num_100_plus" if rest else "num_100"]  # "ciento uno", but "cien"
    else:
        out = [f"num_{hundreds * 100}" + ("_f" if hundreds_form == "f" else "")]
    return out + _es_below_100(rest, units_form) if rest else out


def _es(n: int, form: str) -> list[str]:
    thousands, rest = divmod(n, 1000)
    if not thousands:
        return _es_below_1000(n, form, form)
    if thousands == 1:
        out = ["num_1000"]  # "mil", not "un mil"
    else:
        # "veintiún mil", "doscientos mil" / "doscientas mil horas"
        out = _es_below_1000(thousands, "m", "f" if form == "f" else "m") + ["num_1000"]
    return out + _es_below_1000(rest, form, form) if rest else out


# --- public ------------------------------------------------------------------------------------


def say_number(n: int, lang: str, form: str = "standalone") -> list[str]:
    """Prompt ids saying the whole number `n` (0..999,999); `form` matters in Spanish only."""
    catalog.check_language(lang)
    if form not in FORMS:
        raise NotSayable("number form", form, f"not one of {FORMS}")
    _check("number", n, NUMBER_MAX)
    return _en(n) if lang == "en" else _es(n, form)


def _counted(n: int, lang: str, form: str, one: str, many: str) -> list[str]:
    return say_number(n, lang, form) + [one if n == 1 else many]


def say_money(micros: int, lang: str) -> list[str]:
    """Prompt ids saying an amount of US dollars given in micro-units, exactly (see module doc)."""
    catalog.check_language(lang)
    _check("amount", micros, (NUMBER_MAX + 1) * MICROS - 1)
    dollars, rest = divmod(micros, MICROS)
    cents, fraction = divmod(rest, MICROS_PER_CENT)
    parts: list[list[str]] = []
    if dollars or not rest:
        parts.append(_counted(dollars, lang, "m", "unit_dollar", "unit_dollars"))
    if fraction:
        decimals = f"{fraction:04d}".rstrip("0")
        parts.append(
            say_number(cents, lang)
            + ["num_point"]
            + [f"num_{d}" for d in decimals]
            + ["unit_cents"]
        )
    elif cents:
        parts.append(_counted(cents, lang, "m", "unit_cent", "unit_cents"))
    return parts[0] if len(parts) == 1 else parts[0] + ["money_and"] + parts[1]


def say_duration(seconds: int, lang: str) -> list[str]:
    """Prompt ids saying a duration: "one hour, two minutes and three seconds" (zero parts left
    out; 0 is "zero seconds"). Spanish hours are feminine: "una hora", "veintiuna horas"."""
    catalog.check_language(lang)
    _check("duration in seconds", seconds, DURATION_SECONDS_MAX)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(_counted(hours, lang, "f", "unit_hour", "unit_hours"))
    if minutes:
        parts.append(_counted(minutes, lang, "m", "unit_minute", "unit_minutes"))
    if secs or not parts:
        parts.append(_counted(secs, lang, "m", "unit_second", "unit_seconds"))
    out: list[str] = []
    for i, part in enumerate(parts):
        if i and i == len(parts) - 1:
            out.append("word_and")
        out += part
    return out


def say_key(key: str, lang: str) -> list[str]:
    """The name of a telephone key: "seven", "star" / "asterisco", "pound" / "numeral"."""
    catalog.check_language(lang)
    if key == "*":
        return ["key_star"]
    if key == "#":
        return ["key_pound"]
    if len(key) == 1 and key in "0123456789":
        return [f"num_{key}"]
    raise NotSayable("key", key, "not one of 0-9, * or #")
