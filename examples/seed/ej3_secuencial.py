# Lesson, exercise 3 (variant): join p1 before starting p2.
# Shows: badly placed joins turn concurrent processes into sequential ones.
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
p1.join()
p2.start()
# join hace que le proceso principal espere hasta que p1 haya terminado y se una con el main process
p2.join()
print('Termina la ejecución númerica')
