# Lesson, exercise 3: squares and cubes in two processes at once.
# Shows: both start before either is joined, so they run concurrently.
import procesos as mp


def calc_cuad(numeros):
    print("Calcula el cuadrado de los números")
    for n in numeros:
        print("cuadrado:", n * n)


def calc_cubos(nums):
    print('Calcula el cubo de los números')
    for num in nums:
        print('cubo:', num ** 3)


nums = range(5)
p1 = mp.Process(target=calc_cuad, args=(nums,))
p2 = mp.Process(target=calc_cubos, args=(nums,))
p1.start()
p2.start()
# join hace que le proceso principal espere hasta que pn haya terminado y se una con el main process
p1.join()
p2.join()
print('Termina la ejecución númerica')
