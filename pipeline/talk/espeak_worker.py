"""Child process that drives libespeak-ng and reports when each phoneme starts.

Run as ``python -I pipeline/talk/espeak_worker.py`` by :mod:`pipeline.talk.speech`, never
imported by the app: the library keeps global state and is not thread-safe, so each
request gets a fresh process with a timeout, and a crash there cannot take the app
down. The ``espeak-ng`` command line cannot report phoneme timings (``--pho`` needs
MBROLA voices), but the library's phoneme events carry the exact sample at which each
phoneme starts; the audio it returns is the same as the command line writes.

Standard library only, so it starts in a few milliseconds.
Protocol: a JSON list of jobs on stdin, each ``{"text", "voice", "wpm", "pitch",
"wav"}``; for each job one JSON line on stdout: ``{"sample_rate", "samples",
"phonemes": [[name, start_sample], ...]}`` or ``{"error": "..."}``; one
``{"fatal": "..."}`` line if the library cannot start. Text is given to
the library as plain UTF-8 (no SSML, no ``[[phoneme]]`` input), so any characters are
read as text.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import sys
import wave

# espeak_AUDIO_OUTPUT, espeak_EVENT_TYPE, espeak_PARAMETER and flag values from speak_lib.h.
AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 0x0001
INITIALIZE_DONT_EXIT = 0x8000
EVENT_LIST_TERMINATED = 0
EVENT_PHONEME = 7
PARAM_RATE = 1
PARAM_PITCH = 3
POS_CHARACTER = 1
CHARS_UTF8 = 1


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_char_p),  # (priority byte, language name, NUL) repeated, then NUL
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


def load_library() -> ctypes.CDLL:
    for name in ("libespeak-ng.so.1", ctypes.util.find_library("espeak-ng"), "libespeak-ng.dylib"):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise OSError("libespeak-ng not found (install the espeak-ng package)")


class Synth:
    def __init__(self) -> None:
        self.lib = load_library()
        self.lib.espeak_Synth.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        self.sample_rate = self.lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, None, INITIALIZE_PHONEME_EVENTS | INITIALIZE_DONT_EXIT
        )
        if self.sample_rate <= 0:
            raise OSError("espeak-ng failed to initialise (its data files may be missing)")
        self.audio = bytearray()
        self.phonemes: list[list] = []
        self._callback = _Callback(self._on_audio)  # kept referenced: the library holds the pointer
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n: int, events) -> int:
        if n > 0:
            self.audio += ctypes.string_at(wav, n * 2)
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == EVENT_PHONEME:
                self.phonemes.append([event.id.string.decode("ascii", "replace"), int(event.sample)])
            i += 1
        return 0

    def language_voices(self) -> dict[str, tuple[int, str]]:
        """Language code -> (priority, voice file identifier) of the preferred voice for it."""
        best: dict[str, tuple[int, str]] = {}
        voices = self.lib.espeak_ListVoices(None)
        i = 0
        while voices[i]:
            voice = voices[i].contents
            raw = ctypes.string_at(voice.languages, 200)
            pos = 0
            while pos < len(raw) and raw[pos] != 0:
                priority = raw[pos]
                end = raw.index(b"\0", pos + 1)
                language = raw[pos + 1 : end].decode("ascii", "replace")
                candidate = (priority, voice.identifier.decode())
                if language not in best or candidate < best[language]:
                    best[language] = candidate
                pos = end + 1
            i += 1
        return best

    def set_voice(self, name: str) -> bool:
        """Select a voice by name (``en-us``, ``en-us+f3``) or, as the command line does, by language."""
        if self.lib.espeak_SetVoiceByName(name.encode()) == 0:
            return True
        language, _, variant = name.partition("+")
        found = self.language_voices().get(language.lower())
        if found is None:
            return False
        return self.lib.espeak_SetVoiceByName((found[1] + (f"+{variant}" if variant else "")).encode()) == 0

    def run(self, job: dict) -> dict:
        if not self.set_voice(str(job["voice"])):
            return {"error": f"unknown voice {job['voice']!r}"}
        self.lib.espeak_SetParameter(PARAM_RATE, int(job["wpm"]), 0)
        self.lib.espeak_SetParameter(PARAM_PITCH, int(job["pitch"]), 0)
        self.audio, self.phonemes = bytearray(), []
        text = str(job["text"]).encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(text, len(text), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if status != 0:
            return {"error": f"espeak-ng synthesis failed (status {status})"}
        with wave.open(job["wav"], "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.sample_rate)
            out.writeframes(bytes(self.audio))
        return {"sample_rate": self.sample_rate, "samples": len(self.audio) // 2, "phonemes": self.phonemes}


def main() -> int:
    jobs = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    try:
        synth = Synth()
    except OSError as exc:
        print(json.dumps({"fatal": str(exc)}), flush=True)
        return 1
    for job in jobs:
        print(json.dumps(synth.run(job)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
