"""The prompt catalog: every prompt id the switch can play, its words per language, and its WAV.

One source of truth. `ivr/make_prompts.py` reads it to generate `ivr/prompts/<lang>/<id>.wav`
(8 kHz, 16-bit, mono), the flows and `ivr.say` emit its ids, and a test checks that every entry has
its WAV, that every WAV has an entry, and that the WAVs were generated from the current words.

Two kinds of entries:

* phrases (`PHRASES`): sentences and words the flows play. Each exists in *every* language.
* number words (`NUMBER_WORDS`): the vocabulary `ivr.say` composes numbers from. They are per
  language, because languages split numbers differently (Spanish has "quinientos", "veintiún",
  "doscientas"; English has "hundred"). An id such as ``num_7`` is the standalone cardinal in
  both languages, so it doubles as the name of a key ("press seven" / "oprima siete").

A prompt is addressed as (id, language). Play lists carry ids for the call's language, or a `Path`
when one clip must be in another language (the language menu) or is not in the catalog (recorded
names).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from ivr.denials import DenyReason
from ivr.errors import IvrError

__all__ = [
    "LANGUAGES",
    "VOICES",
    "PROMPTS_DIR",
    "DENY_REASONS",
    "PHRASES",
    "NUMBER_WORDS",
    "UnknownPrompt",
    "UnknownLanguage",
    "Clip",
    "ids",
    "text",
    "path",
    "resolve",
    "entries",
    "check_language",
]

LANGUAGES = ("en", "es")
# espeak-ng voices used to generate each language (Latin American Spanish: the callers' variety).
VOICES: Mapping[str, str] = MappingProxyType({"en": "en-us", "es": "es-419"})

PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"

# Reasons the core may refuse a call (ivr.denials.DenyReason); each has a phrase
# ``deny_<reason>``.
DENY_REASONS: tuple[str, ...] = tuple(r.value for r in DenyReason)

Clip = str | Path  # a prompt id (in the Play's language) or a WAV file


class UnknownPrompt(IvrError, KeyError):
    """A prompt id that the catalog does not have in the asked language."""

    def __init__(self, prompt_id: str, lang: str):
        super().__init__(what="no such prompt", where=f"language {lang}", value=prompt_id)
        self.prompt_id, self.lang = prompt_id, lang

    def __str__(self) -> str:
        return f"no prompt {self.prompt_id!r} in language {self.lang!r}"


class UnknownLanguage(IvrError, ValueError):
    """A language code the catalog has no prompts for."""

    def __init__(self, lang: object):
        super().__init__(
            f"no prompts in language {lang!r} (known: {', '.join(LANGUAGES)})",
            what="no prompts in this language",
            where="language",
            value=lang,
        )
        self.lang = lang


def _p(en: str, es: str) -> dict[str, str]:
    return {"en": en, "es": es}


PHRASES: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        # --- language menu (each entry is played in its own language) ---
        "language_choice": _p("For English, press", "Para español, oprima"),
        # --- inmate: identification and number ---
        "pin_enter": _p(
            "Please enter your PIN, then press the pound key.",
            "Por favor, marque su número de identificación personal "
            "y luego oprima la tecla numeral.",
        ),
        "pin_invalid_retry": _p(
            "That PIN is not correct. Please try again.",
            "Ese número de identificación no es correcto. Intente de nuevo.",
        ),
        "no_input": _p("We did not receive your entry.", "No recibimos su respuesta."),
        "number_enter": _p(
            "Please enter the number you wish to call, including the area code, "
            "then press pound. For international numbers, dial zero one one first.",
            "Marque el número al que desea llamar, con el código de área, y luego "
            "oprima numeral. Para números internacionales, marque primero cero uno "
            "uno.",
        ),
        "number_invalid_retry": _p(
            "That number is not valid. Please try again.",
            "Ese número no es válido. Intente de nuevo.",
        ),
        "invalid_choice": _p("That is not a valid choice.", "Esa opción no es válida."),
        "notice_recorded_inmate": _p(
            "This call will be recorded and may be monitored.",
            "Esta llamada será grabada y puede ser monitoreada.",
        ),
        "notice_privileged_inmate": _p(
            "This call is privileged and will not be recorded or monitored.",
            "Esta llamada es confidencial y no será grabada ni monitoreada.",
        ),
        "time_limit_intro": _p("This call may last up to", "Esta llamada puede durar hasta"),
        "please_hold": _p(
            "Please hold while we connect your call.",
            "Por favor espere mientras conectamos su llamada.",
        ),
        "goodbye": _p("Goodbye.", "Adiós."),
        # --- inmate: one prompt per reason the core refuses a call ---
        "deny_not_approved": _p(
            "The number you dialed is not on your approved list.",
            "El número que marcó no está en su lista aprobada.",
        ),
        "deny_blocked": _p(
            "Calls to this number are blocked.", "Las llamadas a este número están bloqueadas."
        ),
        "deny_outside_calling_hours": _p(
            "Calls are not allowed at this time.", "No se permiten llamadas en este horario."
        ),
        "deny_destination_closed": _p(
            "The number you dialed cannot be called at this hour. Please try again later.",
            "No se puede llamar a este número a esta hora. Por favor, intente más tarde.",
        ),
        "deny_quota_used": _p(
            "You have used all the calls allowed for this period.",
            "Ya usó todas las llamadas permitidas para este período.",
        ),
        "deny_insufficient_funds": _p(
            "There are not enough funds to place this call.",
            "No hay fondos suficientes para realizar esta llamada.",
        ),
        "deny_invalid_number": _p(
            "The number you dialed is not valid.", "El número que marcó no es válido."
        ),
        "deny_refused_number_class": _p(
            "Calls to this type of number are not allowed.",
            "No se permiten llamadas a este tipo de número.",
        ),
        "deny_inmate_suspended": _p(
            "Your calling privileges are suspended.",
            "Sus privilegios de llamada están suspendidos.",
        ),
        "deny_kiosk_unknown": _p(
            "This phone is not in service. Please ask staff for help.",
            "Este teléfono no está en servicio. Pida ayuda al personal.",
        ),
        # Told as little as an unknown kiosk: a caller from the wrong network learns nothing more.
        "deny_kiosk_source_mismatch": _p(
            "This phone is not in service. Please ask staff for help.",
            "Este teléfono no está en servicio. Pida ayuda al personal.",
        ),
        "deny_pin_locked": _p(
            "Your PIN has been locked after too many attempts. Please ask staff for help.",
            "Su número de identificación fue bloqueado por demasiados intentos. "
            "Pida ayuda al personal.",
        ),
        "deny_pin_invalid": _p(
            "That PIN is not valid.", "Ese número de identificación no es válido."
        ),
        "deny_system_unavailable": _p(
            "The calling system is not available right now. Please try again later.",
            "El sistema de llamadas no está disponible en este momento. Intente más tarde.",
        ),
        # --- inmate: what became of the outbound call ---
        "party_no_answer": _p(
            "The party you called did not answer.", "La persona a quien llamó no contestó."
        ),
        "party_busy": _p("The number you called is busy.", "El número al que llamó está ocupado."),
        "party_refused": _p("Your call was refused.", "Su llamada fue rechazada."),
        "party_blocked": _p(
            "The number you called is not accepting calls from this facility.",
            "El número al que llamó no acepta llamadas de esta institución.",
        ),
        "party_hung_up": _p("The party you called hung up.", "La persona a quien llamó colgó."),
        "call_failed": _p(
            "Your call could not be completed. Please try again later.",
            "Su llamada no pudo completarse. Intente más tarde.",
        ),
        # --- during the call (both legs) ---
        "warning_one_minute": _p("You have one minute remaining.", "Le queda un minuto."),
        "call_ending": _p(
            "This call has reached its limit. The call is being ended. Goodbye.",
            "Esta llamada llegó a su límite. La llamada será terminada. Adiós.",
        ),
        # --- called party: the announcement ---
        "cp_intro": _p("You have a prepaid call from", "Tiene una llamada prepagada de"),
        "cp_an_inmate_at": _p("an inmate at", "una persona privada de libertad en"),
        "cp_a_correctional_facility": _p("a correctional facility.", "un centro penitenciario."),
        "cp_notice_recorded": _p(
            "This call is from a correctional facility and will be recorded.",
            "Esta llamada proviene de un centro penitenciario y será grabada.",
        ),
        "cp_notice_unrecorded": _p(
            "This call is from a correctional facility and will not be recorded.",
            "Esta llamada proviene de un centro penitenciario y no será grabada.",
        ),
        "cp_notice_privileged": _p(
            "This call is from a correctional facility. It is privileged "
            "and will not be recorded or monitored.",
            "Esta llamada proviene de un centro penitenciario. Es "
            "confidencial y no será grabada ni monitoreada.",
        ),
        "cp_price_intro": _p("It costs", "Su costo es de"),
        "cp_per_minute": _p("per minute.", "por minuto."),
        "cp_price_free": _p("There is no charge for this call.", "Esta llamada no tiene costo."),
        "cp_menu_accept": _p("To accept, press", "Para aceptar, oprima"),
        "cp_menu_refuse": _p("To refuse, press", "Para rechazar, oprima"),
        "cp_menu_block_facility": _p(
            "To block all calls from this facility, press",
            "Para bloquear todas las llamadas de esta institución, oprima",
        ),
        "cp_menu_block_inmate": _p(
            "To block all calls from this person, press",
            "Para bloquear todas las llamadas de esta persona, oprima",
        ),
        "cp_menu_repeat": _p("To repeat, press", "Para repetir, oprima"),
        "cp_menu_passive": _p(
            "If you stay on the line, the call will be connected.",
            "Si permanece en la línea, la llamada será conectada.",
        ),
        # --- called party: after the choice ---
        "cp_goodbye": _p("Thank you. Goodbye.", "Gracias. Adiós."),
        "cp_blocked_confirm": _p(
            "This number has been blocked at your request. Goodbye.",
            "Este número fue bloqueado a su solicitud. Adiós.",
        ),
        "cp_cannot_complete": _p(
            "We are sorry, this call cannot be completed. Goodbye.",
            "Lo sentimos, esta llamada no puede completarse. Adiós.",
        ),
        # --- number proof: a call that speaks a one-time code (ivr.flows.proof) ---
        "proof_this_is": _p("This is", "Le llama"),
        "proof_caller_default": _p(
            "the family phone service", "el servicio telefónico para familias"
        ),
        "proof_calling_with_code": _p(
            "calling with your verification code.", "con su código de verificación."
        ),
        "proof_code_is": _p("Your code is", "Su código es"),
        "proof_again": _p("Again, your code is", "Repito, su código es"),
        "proof_goodbye": _p(
            "Enter this code where you asked for this call. Goodbye.",
            "Ingrese este código donde pidió esta llamada. Adiós.",
        ),
        # --- keys and units used by ivr.say ---
        "key_star": _p("star", "asterisco"),
        "key_pound": _p("pound", "numeral"),
        "unit_dollar": _p("dollar", "dólar"),
        "unit_dollars": _p("dollars", "dólares"),
        "unit_cent": _p("cent", "centavo"),
        "unit_cents": _p("cents", "centavos"),
        "unit_hour": _p("hour", "hora"),
        "unit_hours": _p("hours", "horas"),
        "unit_minute": _p("minute", "minuto"),
        "unit_minutes": _p("minutes", "minutos"),
        "unit_second": _p("second", "segundo"),
        "unit_seconds": _p("seconds", "segundos"),
        "word_and": _p("and", "y"),  # joins duration parts; Spanish tens-and-units too
        "money_and": _p("and", "con"),  # "one dollar and five cents" / "un dólar con cinco"
        "num_point": _p("point", "punto"),  # decimals of a cent ("punto" as in Mexico)
    }
)

_EN_UNITS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_EN_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_ES_UNITS = (
    "cero uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce "
    "quince dieciséis diecisiete dieciocho diecinueve veinte veintiuno veintidós "
    "veintitrés veinticuatro veinticinco veintiséis veintisiete veintiocho "
    "veintinueve"
).split()
_ES_TENS = "treinta cuarenta cincuenta sesenta setenta ochenta noventa".split()
_ES_HUNDREDS = (
    "doscientos trescientos cuatrocientos quinientos seiscientos setecientos "
    "ochocientos novecientos"
).split()  # 200..900; feminine: -os -> -as


NUMBER_WORDS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "en": MappingProxyType(
            {
                **{f"num_{n}": w for n, w in enumerate(_EN_UNITS)},
                **{f"num_{10 * (i + 2)}": w for i, w in enumerate(_EN_TENS)},
                "num_hundred": "hundred",
                "num_thousand": "thousand",
            }
        ),
        "es": MappingProxyType(
            {
                **{f"num_{n}": w for n, w in enumerate(_ES_UNITS)},
                # apocope and feminine forms: "un minuto", "una hora", "veintiún dólares"
                "num_1_m": "un",
                "num_1_f": "una",
                "num_21_m": "veintiún",
                "num_21_f": "veintiuna",
                **{f"num_{10 * (i + 3)}": w for i, w in enumerate(_ES_TENS)},
                "num_100": "cien",  # exactly one hundred
                "num_100_plus": "ciento",  # 101..199
                **{f"num_{100 * (i + 2)}": w for i, w in enumerate(_ES_HUNDREDS)},
                **{f"num_{100 * (i + 2)}_f": w[:-2] + "as" for i, w in enumerate(_ES_HUNDREDS)},
                "num_1000": "mil",
            }
        ),
    }
)


def _build() -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {lang: {} for lang in LANGUAGES}
    for pid, texts in PHRASES.items():
        missing = set(LANGUAGES) - set(texts)
        if missing:  # a phrase the flows play must exist in every language
            raise AssertionError(f"phrase {pid!r} lacks {sorted(missing)}")
        for lang in LANGUAGES:
            table[lang][pid] = texts[lang]
    for lang, words in NUMBER_WORDS.items():
        for pid, word in words.items():
            if pid in table[lang]:
                raise AssertionError(f"{pid!r} is both a phrase and a number word")
            table[lang][pid] = word
    return table


_TABLE = _build()


def check_language(lang: object) -> str:
    """Return `lang` if the catalog has prompts in it, else raise UnknownLanguage."""
    if lang not in _TABLE:
        raise UnknownLanguage(lang)
    return lang


def ids(lang: str) -> frozenset[str]:
    """Every prompt id available in `lang`."""
    return frozenset(_TABLE[check_language(lang)])


def entries() -> list[tuple[str, str, str]]:
    """(lang, id, text) for every prompt, sorted: what make_prompts generates."""
    return sorted((lang, pid, t) for lang, table in _TABLE.items() for pid, t in table.items())


def text(prompt_id: str, lang: str) -> str:
    """The words of a prompt, as generated (and as a transcript for logs and tests)."""
    try:
        return _TABLE[check_language(lang)][prompt_id]
    except KeyError:
        raise UnknownPrompt(prompt_id, lang) from None


def path(prompt_id: str, lang: str) -> Path:
    """The WAV file of a prompt: ``ivr/prompts/<lang>/<id>.wav`` (8 kHz 16-bit mono)."""
    text(prompt_id, lang)  # raises for an unknown id or language
    return PROMPTS_DIR / lang / f"{prompt_id}.wav"


def resolve(clip: Clip, lang: str) -> Path:
    """A play-list item to a file: a prompt id in `lang`, or a path given as is."""
    if isinstance(clip, Path):
        return clip
    return path(clip, lang)
