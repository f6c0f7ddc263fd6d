"""Voice calls through Twilio Programmable Voice, reading the notice aloud.

The call carries its TwiML inline (``Twiml``, no webhook to fetch)::

    <Response>
      <Gather numDigits="1" action="{gather_url}" method="POST">
        <Say voice=V language=L>{body}</Say> <Say ...>{menu}</Say> <Pause length="1"/>
        <Say ...>{body}</Say> <Say ...>{menu}</Say>
      </Gather>
      <Say ...>{goodbye}</Say>
    </Response>

The body is read twice, each time followed by the menu ("press 1 to hear it
again, press 2 for our service line"; without a ``dial_number`` only press
1); a key pressed goes to ``gather_url`` (``message.menu_url``, else the
channel's ``gather_url``; served by ``notifier``), which answers with
:func:`gather_response`: ``1`` reads it again, ``2`` ``<Dial>``s
``dial_number`` (E.164: Twilio refuses a short code such as 1911, errors
13223/13224), anything else says goodbye. Status callbacks (``initiated``,
``ringing``, ``answered``, ``completed``) go to ``message.callback_url``.

Voice: each notice language names its ``voice`` and ``language``
(``voices={"zh-TW": {"voice": "Google.cmn-TW-Standard-A", "language":
"cmn-TW"}, ...}``): Twilio's default voice speaks no zh-TW, and
``Polly.Zhiyu`` speaks mainland Mandarin (``cmn-CN``). A language not listed
falls back to the first one listed. Amounts are marked in the script
(``channels.speech``): a Polly or Google voice reads them through SSML
``<say-as interpret-as="cardinal">``, a basic voice gets them grouped ("1,830").

Answering-machine detection: with ``machine_detection`` set the call is
created with ``MachineDetection`` and ``AsyncAmd=true``, so the notice starts at
once and Twilio reports ``AnsweredBy`` (``human``, ``machine_end_beep``, ...,
``unknown``) to ``message.machine_url`` when it knows. :func:`voicemail` is the
short TwiML a machine is left with instead (the caller replaces the call's
TwiML with it).

Vendor pages:

* create a call: https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource
  (inline ``Twiml`` is limited to 4,000 characters, so long bodies are refused here)
* <Say>, voices and languages: https://www.twilio.com/docs/voice/twiml/say/text-speech
* <Gather>: https://www.twilio.com/docs/voice/twiml/gather; <Dial>: https://www.twilio.com/docs/voice/twiml/dial
* answering machine detection: https://www.twilio.com/docs/voice/answering-machine-detection
* call status callbacks: https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent

Errors are mapped in :mod:`channels.twilio_common`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from twilio.twiml.voice_response import VoiceResponse

from channels import speech
from channels.base import Channel, Message, PermanentChannelError, SendResult
from channels.registry import register
from channels.twilio_common import (
    DEFAULT_BASE_URL,
    LOOKUP_LIMIT,
    TwilioConnection,
    accepted_since,
    translate_errors,
)

__all__ = ["TwilioVoice", "announcement", "gather_response", "say_voice", "voicemail"]

STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")

# A voice per language: the text-to-speech voice and its Twilio language.
Voices = Mapping[str, Mapping[str, str]]
DEFAULT_VOICES: Voices = {
    "zh-TW": {"voice": "Google.cmn-TW-Standard-A", "language": "cmn-TW"},
    "en": {"voice": "Polly.Joanna-Neural", "language": "en-US"},
}

# Per notice language (the language of the body, not of the voice).
_GOODBYE = {"zh-TW": "謝謝您的收聽，再見。", "en": "Thank you. Goodbye."}
_CONNECTING = {
    "zh-TW": "正在為您轉接客服專線，請稍候。",
    "en": "Connecting you to our service line.",
}
_MENU_REPEAT = {"zh-TW": "重聽請按1。", "en": "To hear this message again, press 1."}
_MENU_DIAL = {"zh-TW": "轉接客服專線請按2。", "en": "For our service line, press 2."}


def _text(texts: Mapping[str, str], language: str) -> str:
    return texts.get(language) or texts.get(language.split("-")[0]) or texts["en"]


def say_voice(language: str, voices: Voices = DEFAULT_VOICES) -> tuple[str, str]:
    """``(voice, language)`` of ``<Say>`` for one of our notice languages."""
    chosen = voices.get(language) or voices.get(language.split("-")[0])
    if chosen is None:
        chosen = next(iter(voices.values()))
    return chosen["voice"], chosen["language"]


def _say(verb: Any, text: str, language: str, voices: Voices) -> None:
    voice, lang = say_voice(language, voices)
    if not speech.reads_ssml(voice):
        verb.say(speech.plain(text), voice=voice, language=lang)
        return
    say = verb.say(voice=voice, language=lang)
    for part in speech.parts(text):
        if isinstance(part, speech.SayAs):
            say.say_as(part.text, interpret_as=part.interpret_as)
        else:
            say.nest(part)  # mixed content: the SDK writes it as the text or a tail


def _menu(language: str, *, can_dial: bool) -> str:
    repeat = _text(_MENU_REPEAT, language)
    return f"{repeat} {_text(_MENU_DIAL, language)}" if can_dial else repeat


def announcement(
    body: str,
    *,
    language: str,
    gather_url: str | None,
    voices: Voices = DEFAULT_VOICES,
    can_dial: bool = False,
) -> str:
    """TwiML that reads ``body`` and the menu twice inside a one-digit ``<Gather>``."""
    response = VoiceResponse()
    gather = response.gather(num_digits=1, action=gather_url, method="POST" if gather_url else None)
    menu = _menu(language, can_dial=can_dial) if gather_url else None
    for turn in range(2):
        if turn:
            gather.pause(length=1)
        _say(gather, body, language, voices)
        if menu:
            _say(gather, menu, language, voices)
    _say(response, _text(_GOODBYE, language), language, voices)
    return str(response)


def gather_response(
    digit: str,
    *,
    body: str,
    language: str,
    dial_number: str,
    gather_url: str | None,
    voices: Voices = DEFAULT_VOICES,
) -> str:
    """TwiML answering a pressed key: ``1`` repeats, ``2`` dials ``dial_number``, else goodbye."""
    if digit == "1":
        return announcement(
            body,
            language=language,
            gather_url=gather_url,
            voices=voices,
            can_dial=bool(dial_number),
        )
    response = VoiceResponse()
    if digit == "2" and dial_number:
        _say(response, _text(_CONNECTING, language), language, voices)
        response.dial(dial_number)
    else:
        _say(response, _text(_GOODBYE, language), language, voices)
        response.hangup()
    return str(response)


def voicemail(text: str, *, language: str, voices: Voices = DEFAULT_VOICES) -> str:
    """TwiML for an answering machine: ``text`` once, then hang up."""
    response = VoiceResponse()
    _say(response, text, language, voices)
    response.hangup()
    return str(response)


@register("voice", "twilio")
class TwilioVoice(Channel):
    """Call the customer and read the notice, offering a repeat or the service line."""

    channel: ClassVar[str] = "voice"
    provider: ClassVar[str] = "twilio"
    twiml_maxlen: ClassVar[int] = 4000  # Twilio's limit on the inline Twiml parameter

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        dial_number: str = "",
        voices: Voices = DEFAULT_VOICES,
        machine_detection: str = "DetectMessageEnd",
        gather_url: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
    ) -> None:
        if not account_sid:
            raise ValueError("twilio account_sid is required")
        if not auth_token:
            raise ValueError("twilio auth_token is required")
        if not from_number:
            raise ValueError("twilio voice from_number is required")
        if dial_number and not (dial_number.startswith("+") and dial_number[1:].isdigit()):
            raise ValueError(f"twilio voice dial_number must be E.164, not {dial_number!r}")
        if not voices:
            raise ValueError("twilio voice needs at least one voice")
        self.from_number = from_number
        self.dial_number = dial_number
        self.voices = voices
        self.machine_detection = machine_detection
        self.gather_url = gather_url
        self._twilio = TwilioConnection(
            account_sid=account_sid, auth_token=auth_token, base_url=base_url, timeout=timeout
        )

    def twiml(self, message: Message) -> str:
        """The TwiML the call will run for ``message``."""
        gather_url = message.menu_url or self.gather_url
        return announcement(
            message.body,
            language=message.language,
            gather_url=gather_url,
            voices=self.voices,
            can_dial=bool(self.dial_number),
        )

    def voicemail(self, text: str, language: str) -> str:
        """The TwiML an answering machine is left with, in this channel's voice."""
        return voicemail(text, language=language, voices=self.voices)

    async def send(self, message: Message) -> SendResult:
        if not message.to:
            raise PermanentChannelError("no recipient", code="no_recipient")
        to = message.to[0]
        twiml = self.twiml(message)
        if len(twiml) > self.twiml_maxlen:
            raise PermanentChannelError(
                f"TwiML of {len(twiml)} characters exceeds {self.twiml_maxlen}",
                code="twiml_too_long",
            )
        # Async: the notice starts at once and a person never waits for the detection.
        detection: dict[str, Any] = (
            {
                "machine_detection": self.machine_detection,
                "async_amd": "true",
                "async_amd_status_callback": message.machine_url,
                "async_amd_status_callback_method": "POST",
            }
            if self.machine_detection and message.machine_url
            else {}
        )
        with translate_errors(to=to):
            call = await self._twilio.client().calls.create_async(
                to=to,
                from_=self.from_number,
                twiml=twiml,
                status_callback=message.callback_url,
                status_callback_event=list(STATUS_EVENTS) if message.callback_url else None,
                **detection,
            )
        return SendResult(
            provider=self.provider,
            provider_id=str(call.sid),
            status="sent",
            detail={"twilio_status": str(call.status)},
        )

    async def leave_voicemail(self, call_sid: str, text: str, language: str) -> None:
        """Replace the live call's TwiML: the machine records ``text``, then the call ends."""
        with translate_errors(to=call_sid):
            await (
                self._twilio.client()
                .calls(call_sid)
                .update_async(twiml=self.voicemail(text, language))
            )

    async def lookup(self, message: Message, *, since: datetime) -> Sequence[SendResult]:
        """Calls from our number to ``message.to[0]`` that Twilio took since ``since``.

        A Call resource carries neither its TwiML nor its ``StatusCallback``:
        the match is recipient, caller id and time
        (https://www.twilio.com/docs/voice/api/call-resource#read-multiple-call-resources).
        """
        if not message.to:
            return []
        with translate_errors(to=message.to[0]):
            records = await self._twilio.client().calls.list_async(
                to=message.to[0],
                from_=self.from_number,
                limit=LOOKUP_LIMIT,
                page_size=LOOKUP_LIMIT,
            )
        return accepted_since(records, since)

    async def aclose(self) -> None:
        await self._twilio.aclose()
