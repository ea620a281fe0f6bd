"""Refusals in the page's language: a problem's title by its type, each field's message by its
code (families.errors.CODES, web.problems.WEB_CODES, validation.<type>) with its params.

English pages show the API's own words (they are English and name values exactly); other
languages say the same from the code. A code whose text needs a value the refusal did not carry
falls back to the generic text of its kind rather than show a half-filled sentence.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from web.problems import ApiProblem

__all__ = ["PROBLEM_ES", "TITLE_ES", "localized", "LocalProblem"]

TITLE_ES = {
    "internal": "Error interno", "invalid-request": "Solicitud no válida",
    "unauthenticated": "No ha iniciado sesión", "forbidden": "No permitido",
    "not-found": "No encontrado", "method-not-allowed": "Método no permitido",
    "conflict": "No se puede hacer ahora", "body-too-large": "El formulario es demasiado grande",
    "unsupported-media-type": "Tipo de contenido no admitido",
    "unavailable": "Servicio no disponible", "too-many-requests": "Demasiados intentos",
}
# A not-found problem carries no field: its detail in Spanish says only that.
DETAIL_ES = {
    "not-found": "No existe, o no es suyo.",
    "too-many-requests": "Demasiados intentos: espere unos minutos y vuelva a intentarlo.",
    "unauthenticated": "Inicie sesión para seguir.",
    "forbidden": "No tiene permiso para hacer esto.",
    "internal": "Algo falló de nuestro lado; no se cambió nada.",
}

PROBLEM_ES = {
    # generic, one per kind
    "invalid": "el valor no es válido",
    "refused": "no se puede hacer esto ahora",
    "not_found": "no existe, o no es suyo",
    "not_approved": "no tiene permiso para esto",
    # web
    "amount.format": "escriba un importe como 25.00 (punto decimal, hasta dos decimales)",
    "passwords_differ": "las dos contraseñas no coinciden",
    "login.wrong": "el correo o la contraseña no son correctos",
    "login.unverified": "todavía no confirmó su correo",
    # deposits
    "deposit.per_payment_max": "como máximo {max} por pago",
    "deposit.daily_max": "el límite diario de depósitos es {max}; hoy quedan {left}",
    "deposit.balance_max": "una cuenta puede tener como máximo {max}; tiene {has} "
                           "(y {pending} en camino)",
    "deposit.inmate_monthly_max": "el centro permite {max} al mes para este interno; "
                                  "quedan {left} este mes",
    "deposit.approved_contacts_only": "este centro acepta depósitos solo de contactos "
                                      "aprobados; ninguno de sus números comprobados lo es",
    "deposit.key_reused": "este formulario ya se usó para otro pago; vuelva a abrirlo",
    "deposit.amount_positive": "debe ser mayor que 0",
    "deposit.no_prepaid_account": "el número todavía no tiene cuenta prepagada",
    "third_party.fee_prohibited": "las reglas de este centro no permiten comisiones de terceros",
    "third_party.fee_changed": "este pago se informó antes con una comisión de {fee}",
    # numbers and refunds
    "number.not_yours": "{number} no es uno de sus números",
    "number.not_proven": "{number} todavía no está comprobado: debe comprobarlo una llamada "
                         "o nuestro personal",
    "number.taken": "{number} ya está comprobado por otra cuenta",
    "number.too_many": "como máximo {max} números por cuenta",
    "number.format": "no es un número de teléfono válido",
    "refund.nothing_to_refund": "no hay saldo sin usar para reembolsar",
    "refund.not_from_portal": "el saldo no vino de un pago con tarjeta del portal: pida el "
                              "reembolso a nuestro personal",
    # holders
    "password.wrong": "no es su contraseña",
    "password.weak": "la contraseña es demasiado corta o fácil de adivinar; elija otra más "
                     "larga",
    "token.unknown": "no es un código enviado por este servicio",
    "token.used": "este código ya se usó (o lo reemplazó uno más nuevo)",
    "token.expired": "este código venció; pida uno nuevo",
    "email.format": "no es una dirección de correo como nombre@ejemplo.org",
    # contacts, blocks, history
    "inmate.unknown": "no existe ese interno",
    "facility.unknown": "no existe ese centro",
    "facility.unpublished": "este centro no publica su lista; consulte al centro",
    "name.too_short": "escriba al menos {min} letras del nombre, o el número de interno",
    "contact.denied": "el centro rechazó este contacto; consulte al centro",
    "month.format": "escriba el mes como AAAA-MM",
    # less common: blocks, contact requests, statements, account, payments, refunds
    "block.one_target": "bloquee un centro o un interno (uno de los dos)",
    "block.unknown": "no tiene ese bloqueo en este número",
    "contact_request.unknown": "no existe esa solicitud de contacto",
    "contact_request.decided": "la solicitud ya está decidida ({state})",
    "contact.not_added": "el centro no admite más contactos para este interno; consulte al "
                         "centro",
    "statement.delivery": "elija papel o electrónico",
    "statement.fee_unpaid": "el estado de cuenta en papel cuesta {fee} y el saldo no alcanza",
    "email.missing": "escriba una dirección de correo",
    "email.already_confirmed": "esta dirección ya está confirmada",
    "holder.unknown": "no existe esa cuenta",
    "language.unknown": "elija inglés o español",
    "number.not_claimed": "{number} no es uno de sus números",
    "password.not_text": "escriba la contraseña como texto",
    "password.too_short": "la contraseña necesita al menos {min} caracteres",
    "password.too_long": "la contraseña puede tener como máximo {max} caracteres",
    "password.is_email": "la contraseña no puede ser su dirección de correo",
    "password.too_simple": "use más caracteres distintos en la contraseña",
    "payment.unknown": "no existe ese pago",
    "deposit.key_format": "la clave del formulario debe tener de 1 a {max} caracteres "
                          "imprimibles",
    "deposit.purpose": "elija saldo prepagado o cuenta del interno",
    "deposit.provider_amount_mismatch": "el proveedor cobró otro importe: el pago queda "
                                        "pendiente de revisión por nuestro personal",
    "third_party.fee_negative": "la comisión del tercero debe ser 0 o más",
    "third_party.fee_missing": "un pago de un tercero necesita la comisión del tercero (0 o más)",
    "third_party.fee_above_reported": "una comisión de {fee} supera la que informó el tercero: "
                                      "el pago queda pendiente de revisión",
    "profile.no_fee_schedule": "no hay tarifas de comisiones para el perfil {profile}",
    "refund.no_prepaid_account": "el número no tiene cuenta prepagada",
    "refund.ledger_refused": "no se pudo hacer el reembolso; no se cambió nada",
    # proof of a number by call
    "proof_call.not_claimed": "primero agregue este número a su cuenta",
    "proof_call.already_proven": "este número ya está comprobado",
    "proof_call.proven_by_other": "este número ya está comprobado por otra cuenta",
    "proof_call.refused_number_class": "el sistema no llama a este tipo de número (emergencia, "
                                       "servicio, gratuito, de tarifa especial o extranjero)",
    "proof_call.blocked": "este número no recibe llamadas del sistema",
    "proof_call.no_route": "el sistema no tiene ruta hacia este número",
    "proof_call.too_soon": "hace un momento se llamó a este número: espere un minuto",
    "proof_call.number_daily_limit": "este número ya recibió hoy todas las llamadas de "
                                     "comprobación permitidas",
    "proof_call.holder_daily_limit": "ya pidió hoy todas las llamadas de comprobación "
                                     "permitidas",
    "proof_call.node_hourly_limit": "hay demasiadas llamadas de comprobación ahora: inténtelo "
                                    "más tarde",
    "proof_code.no_proof": "no se pidió ninguna llamada de comprobación para este número",
    "proof_code.used": "este código ya se usó",
    "proof_code.not_spoken": "la llamada no dijo ningún código: pida otra llamada",
    "proof_code.expired": "el código venció: pida otra llamada",
    "proof_code.attempts_used": "demasiados códigos equivocados: pida otra llamada",
    "proof_code.malformed": "el código son los dígitos que dijo la llamada (quedan {left} "
                            "intentos)",
    "proof_code.wrong_code": "ese no es el código que dijo la llamada (quedan {left} intentos)",
    # request validation
    "validation.missing": "falta este dato",
    "validation.extra_forbidden": "este dato no se admite aquí",
    "validation.string_type": "debe ser texto",
    "validation.string_pattern_mismatch": "no tiene la forma esperada",
    "validation.string_too_short": "es demasiado corto (al menos {min_length})",
    "validation.string_too_long": "es demasiado largo (como máximo {max_length})",
    "validation.int_type": "debe ser un número entero",
    "validation.int_parsing": "debe ser un número entero",
    "validation.int_from_float": "debe ser un número entero",
    "validation.bool_type": "debe ser sí o no",
    "validation.bool_parsing": "debe ser sí o no",
    "validation.uuid_type": "no es un identificador válido",
    "validation.uuid_parsing": "no es un identificador válido",
    "validation.literal_error": "debe ser uno de: {expected}",
    "validation.enum": "debe ser uno de: {expected}",
    "validation.greater_than": "debe ser mayor que {gt}",
    "validation.greater_than_equal": "debe ser al menos {ge}",
    "validation.less_than": "debe ser menor que {lt}",
    "validation.less_than_equal": "debe ser como máximo {le}",
    "validation.datetime_type": "debe ser una fecha y hora",
    "validation.datetime_parsing": "no es una fecha y hora válida",
    "validation.date_type": "debe ser una fecha",
    "validation.date_parsing": "no es una fecha válida (AAAA-MM-DD)",
    "validation.list_type": "debe ser una lista",
    "validation.too_short": "tiene muy pocos elementos",
    "validation.too_long": "tiene demasiados elementos",
    "validation.model_type": "debe ser un objeto",
    "validation.dict_type": "debe ser un objeto",
    "validation.json_invalid": "no es JSON válido",
    "validation.value_error": "el valor no es válido",
    "validation.url_parsing": "no es una dirección web válida",
    "validation.other": "el valor no es válido",
}
_GENERIC_BY_STATUS = {409: "refused", 404: "not_found", 403: "not_approved"}


@dataclass(frozen=True)
class LocalError:
    location: str
    field: str
    message: str
    code: str


@dataclass(frozen=True)
class LocalProblem:
    """What a page shows of a refusal: the shape templates read from an ApiProblem."""
    status: int
    title: str
    detail: str
    slug: str
    errors: list[LocalError] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def _say(code: str, params: dict[str, str], status: int) -> str:
    text = PROBLEM_ES.get(code)
    if text is not None:
        try:
            return text.format(**params)
        except (KeyError, IndexError, ValueError):
            pass
    return PROBLEM_ES[_GENERIC_BY_STATUS.get(status, "invalid")]


def localized(problem: ApiProblem, lang: str) -> Any:
    """The problem as a page in `lang` shows it (English: as the API said it)."""
    if lang == "en":
        return problem
    errors = [LocalError(e.location, e.field, _say(e.code, e.params, problem.status), e.code)
              for e in problem.errors]
    if errors:
        detail = f"{errors[0].message}" if len(errors) == 1 else "; ".join(
            e.message for e in errors)
    else:
        detail = DETAIL_ES.get(problem.slug, TITLE_ES.get(problem.slug, problem.title))
    return LocalProblem(problem.status, TITLE_ES.get(problem.slug, problem.title), detail,
                        problem.slug, errors, problem.headers)
