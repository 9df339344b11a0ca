# Lesson, exercise 4 (sequential): squares then cubes in one process, 0.2 s a number.
# Shows: the baseline time, about 2.0 s for 5 + 5 numbers.
import time

import procesos as mp  # noqa: F401  (the lesson imports it here too)

SLEEP = float(__import__("os").environ.get("PROCESOS_LESSON_SLEEP", "0.2"))


def calc_cuad(numeros):
    print("Calcula el cuadrado de los números")
    for n in numeros:
        time.sleep(SLEEP)
        print("cuadrado:", n * n)


def calc_cubos(nums):
    print('Calcula el cubo de los números')
    for num in nums:
        time.sleep(SLEEP)
        print('cubo:', num ** 3)


nums = range(5)
t = time.time()
calc_cuad(nums)
calc_cubos(nums)

print("Tiempo de ejecución: ", time.time() - t)
print("Finaliza la ejecución")
