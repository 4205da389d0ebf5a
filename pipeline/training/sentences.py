"""Random English sentences for synthetic lip-sync training data.

A small grammar over a word list chosen to cover every English phoneme in many
contexts (bilabials, labiodentals, rounded and spread vowels, clusters), plus some
numbers and questions so the prosody varies. Sentences are nonsense more often than
not; what matters is that the phoneme sequences are natural English.
"""

from __future__ import annotations

import random

NOUNS = """
apple baby ball band bank bath beach bear bed bell bird boat body book boot bottle box boy bread
bridge brother bubble bus butter cabin cake camera candle car card cat chair cheese child church city
clock cloud coat coffee cook corner cow cup dog door dream dress driver duck earth egg elephant engine
eye face family farm father feather fence field finger fire fish flag floor flower foot forest fox
friend frog garden gate girl glass globe goat gold grape grass guitar hammer hand hat head heart hill
horse house island jacket jam jar judge juice kettle key king kitchen kite knee knife lady lamp leaf
lemon letter library lion lip machine map market meadow milk mirror money monkey moon morning mother
mountain mouse mouth movie museum music nail needle nest night nose number ocean office orange owl
paper park parrot party pebble pencil people pepper piano picture pillow pipe pizza planet plate pocket
pond potato puppy purple queen rabbit radio rain river road robot rock roof room rope rose ship shoe
shop shoulder silver singer sister sky smile snake snow soap sofa song soup spoon square star station
stone storm street sugar summer sun table teacher thumb thunder ticket tiger tomato tooth tower town
toy train tree truck umbrella valley van vase village violin voice wagon wall watch water wave whale
wheel window wing winter wolf woman wood world yacht yard year zebra zoo
""".split()

ADJECTIVES = """
big small old young new happy sad quick slow bright dark warm cold soft hard smooth rough quiet loud
blue green yellow red purple brown white black busy lazy brave shy funny serious heavy light cheap
rich poor clean dirty empty full huge tiny thin thick sweet bitter fresh strange famous gentle wild
calm proud lovely ugly beautiful curious sleepy hungry thirsty wooden golden broken open shiny
""".split()

VERBS = """
bought brought built carried caught chased cleaned climbed cooked counted covered dropped fixed followed
found gave grabbed held helped hid joined kept kicked kissed knew left lifted liked loved made met missed
moved needed opened painted passed pulled pushed put reached read saw sent showed shut sold stopped
taught threw touched visited wanted washed watched wrote
""".split()

INTRANSITIVE = """
arrived barked breathed cried danced drove fell flew laughed left listened moved paused played rested
ran sang shouted slept smiled sneezed stayed swam talked waited walked whispered worked yawned
""".split()

ADVERBS = """
quickly slowly happily quietly loudly softly bravely gently suddenly carefully badly warmly calmly
proudly often never always sometimes today yesterday tomorrow outside upstairs together again
""".split()

PREPOSITIONS = "above across after against along around behind below beside beyond by from in into near of off on over past through to toward under with without".split()
NAMES = "Alice Bob Paul Mary Peter Fiona Victor Thomas Ruth Jim Oliver Uma Zoe Charles Beth Mike Yvonne Ethan".split()
DETERMINERS = "the a my your his her our their this that every some one".split()
QUESTIONS = ["Why did", "Where did", "How did", "When did", "Did"]
BASE_VERBS = (
    "arrive bark cry dance drive fall fly laugh leave listen play rest run sing sleep smile swim talk wait walk".split()
)
NUMBERS = ["two", "three", "five", "seven", "nine", "twelve", "twenty", "forty four", "a hundred", "a thousand"]


def noun_phrase(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(NAMES)
    if roll < 0.25:
        return f"{rng.choice(NUMBERS)} {rng.choice(NOUNS)}s"
    words = [rng.choice(DETERMINERS)]
    if rng.random() < 0.5:
        words.append(rng.choice(ADJECTIVES))
    words.append(rng.choice(NOUNS))
    if words[0] == "a" and words[1][0] in "aeiou":
        words[0] = "an"
    return " ".join(words)


def clause(rng: random.Random) -> str:
    subject = noun_phrase(rng)
    if rng.random() < 0.6:
        parts = [subject, rng.choice(VERBS), noun_phrase(rng)]
    else:
        parts = [subject, rng.choice(INTRANSITIVE)]
    if rng.random() < 0.4:
        parts += [rng.choice(PREPOSITIONS), noun_phrase(rng)]
    if rng.random() < 0.3:
        parts.append(rng.choice(ADVERBS))
    return " ".join(parts)


def sentence(rng: random.Random) -> str:
    """One sentence of 3 to about 25 words, punctuated (commas and full stops make pauses)."""
    roll = rng.random()
    if roll < 0.12:
        text = f"{rng.choice(QUESTIONS)} {noun_phrase(rng)} {rng.choice(BASE_VERBS)}?"
        return text[0].upper() + text[1:]
    text = clause(rng)
    if roll > 0.6:
        text += rng.choice([", and ", ", but ", ". Then ", ", so ", "; "]) + clause(rng)
    text = text[0].upper() + text[1:]
    return text + rng.choice([".", ".", ".", "!"])


def utterance(rng: random.Random, max_chars: int = 160) -> str:
    """One or two sentences, cut to whole sentences under ``max_chars``."""
    text = sentence(rng)
    while rng.random() < 0.35:
        nxt = sentence(rng)
        if len(text) + 1 + len(nxt) > max_chars:
            break
        text += " " + nxt
    return text[:max_chars]
