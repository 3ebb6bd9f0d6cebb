"""The fixed texts of the LLM fidelity measurement (written for edge; no outside corpus).

``PROBE_TEXTS`` give next-token distributions at every position (top-1 agreement, KL);
``HELDOUT_TEXT`` is a separate paragraph for perplexity; ``GREEDY_PROMPTS`` are the
questions whose greedy answers are compared end to end.
"""

from __future__ import annotations

PROBE_TEXTS: tuple[str, ...] = (
    "The old lighthouse keeper climbed the spiral stairs every evening at dusk. From the top he "
    "could see the fishing boats returning to the harbour, their lamps swaying with the swell, "
    "and he counted them one by one until the last had passed the breakwater.",
    "To replace a bicycle tyre, first release the brake and remove the wheel. Push the valve "
    "into the rim, work a tyre lever under the bead and run it around the wheel. Check the "
    "inside of the tyre for glass or thorns before fitting the new inner tube.",
    "Photosynthesis converts light energy into chemical energy. In the chloroplasts, water is "
    "split and oxygen is released, while carbon dioxide from the air is fixed into sugars that "
    "the plant uses to grow, to build cell walls and to store energy for the night.",
    '"Are you coming to the market tomorrow?" asked Maria.\n"Only if it stops raining," '
    'said Tom. "Last week the stalls were half empty and the bread was gone by nine."\n'
    '"Then we should leave early," she replied.',
    'def mean(values):\n    """Return the arithmetic mean of a non-empty list."""\n    if not values:\n'
    '        raise ValueError("empty list")\n    return sum(values) / len(values)\n\n'
    "print(mean([3, 5, 8, 13]))  # 7.25\n",
    "In 2023 the town counted 48,512 residents, up 3.4 percent from 2019. The budget of 12.6 "
    "million euros was split between schools (41%), roads (23%), health (19%) and culture, "
    "which received the remaining 17%.",
    "Shopping list for the weekend: two loaves of rye bread, a dozen eggs, olive oil, tomatoes, "
    "fresh basil, a block of parmesan, coffee beans, oat milk, apples for the children and "
    "something nice for Sunday's dessert, perhaps a lemon tart.",
    "The committee met on Tuesday to review the proposal. After a long discussion about costs "
    "and timing, the members agreed to fund a smaller pilot first and to decide on the full "
    "project once the results of the first six months are known.",
    "Dear Ms. Novak,\nThank you for your letter of 4 March. I am sorry to hear that the heater you "
    "ordered arrived damaged. We will send a replacement this week at no cost, and a courier will "
    "collect the broken unit. Please keep the original box if you can.\nKind regards,\nJ. Ortiz",
    "Step 1: preheat the oven to 200 degrees. Step 2: mix the flour, salt and yeast in a large "
    "bowl. Step 3: add warm water and knead the dough for ten minutes until it is smooth. Step 4: "
    "let it rise for an hour, shape the loaf and bake it for thirty-five minutes.",
    "The train from Vienna to Munich was delayed by forty minutes because of a signal failure near "
    "Salzburg. Passengers with connecting trains were told to speak to the staff at the information "
    "desk, and free water was handed out in the second class carriages.",
    "Q: Why is the sky blue?\nA: Sunlight contains all colours. Air molecules scatter short "
    "wavelengths much more strongly than long ones, so blue light is scattered across the whole "
    "sky and reaches our eyes from every direction, while the sun itself looks slightly yellow.",
    "SELECT name, COUNT(*) AS orders\nFROM customers JOIN orders ON orders.customer_id = "
    "customers.id\nWHERE orders.created_at >= '2024-01-01'\nGROUP BY name\nORDER BY orders DESC\n"
    "LIMIT 10;",
    "She opened the window and the smell of rain came in with the cold air. Down in the street a "
    "dog barked twice, a car door slammed, and then everything was quiet again except for the "
    "water running in the gutters and the clock ticking on the kitchen wall.",
    "Good sleep habits matter more than most people think. Going to bed at the same time every "
    "night, keeping the bedroom dark and cool, and avoiding screens for an hour before sleep can "
    "improve both how quickly you fall asleep and how rested you feel in the morning.",
    "The match ended two to one after extra time. The home side scored first from a corner, the "
    "visitors equalised with a penalty just before half time, and the winning goal came from a "
    "long shot in the hundred and fourth minute that the goalkeeper never saw.",
)

HELDOUT_TEXT: str = (
    "Rivers shape the land they cross in ways that are easy to overlook over a human lifetime. "
    "A river carries sand, silt and gravel downstream, dropping the heavier grains where the "
    "current slows and picking up new material where it speeds up. Over centuries this slow "
    "exchange builds wide flood plains, cuts steep gorges through hard rock and moves whole "
    "meanders across a valley. When a river reaches the sea, the remaining sediment settles in "
    "a delta, and the coastline advances a little every year unless storms or tides carry the "
    "deposits away. People have always settled along rivers because they offer water for "
    "drinking and farming, a route for trade and fertile soil renewed by every flood. The same "
    "floods, however, can destroy houses and fields within hours. Engineers have built levees, "
    "dams and straightened channels to control the water, but these works often move the "
    "problem downstream or starve the delta of the sediment it needs. In recent decades many "
    "regions have begun to give rivers more room again: old side channels are reconnected, "
    "dikes are moved back from the banks and low meadows are allowed to flood in winter. These "
    "projects lower the peak of a flood, create habitats for fish and birds, and let the river "
    "continue the work it has always done, slowly and patiently, one grain of sand at a time."
)

GREEDY_PROMPTS: tuple[str, ...] = (
    "What is the capital of France?",
    "Describe this picture in one sentence.",
    "Give me three tips for staying focused while studying.",
    "Write a short poem about the sea.",
    "How do I make a cup of green tea?",
    "What is in this image?",
    "Explain what a prime number is to a child.",
    "List three animals that live in the ocean.",
)
