# Lesson, example 1: create a process from a function, start() it, join() it.
# Shows: the child runs `tarea` and prints; the parent waits for it with join().
import procesos as mp


def tarea(name):
    print("Hola", name)


if __name__ == '__main__':
    p = mp.Process(target=tarea, args=('Guillermo G',))
    p.start()  # Invocamos el proceso
    p.join()  # Unimos al padre
