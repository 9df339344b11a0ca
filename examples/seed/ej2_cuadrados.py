# Lesson, example 2: one process computes squares while the parent waits, timed.
# Shows: a process created at module level, no __main__ guard needed with procesos.
import time

import procesos as mp


def calc_cuad(numeros):
    print("Calcula el cuadrado de los números")
    for n in numeros:
        print("cuadrado:", n * n)


nums = range(10)
t = time.time()
p1 = mp.Process(target=calc_cuad, args=(nums,))
# Empezar el proceso
p1.start()
# Va regresar a la ejecucion al padre
p1.join()

print("Tiempo de ejecución: ", time.time() - t)
print("Finaliza la ejecución")
